/// A list that keeps its first element inline: a list of one element (a read inside one chunk,
/// the common case on the I/O path) allocates nothing.
///
/// Invariant: `rest` is empty whenever `first` is nil; the elements are `first` then `rest`.
struct SmallList<Element>: Sequence {
    private var first: Element?
    private var rest: [Element] = []

    init() {}

    var isEmpty: Bool { first == nil }
    var count: Int { first == nil ? 0 : 1 + rest.count }

    var last: Element? { rest.last ?? first }

    mutating func append(_ element: Element) {
        if first == nil { first = element } else { rest.append(element) }
    }

    /// Replaces the last element (the list must not be empty).
    mutating func replaceLast(with element: Element) {
        if rest.isEmpty { first = element } else { rest[rest.count - 1] = element }
    }

    struct Iterator: IteratorProtocol {
        fileprivate var first: Element?
        fileprivate var rest: IndexingIterator<[Element]>

        mutating func next() -> Element? {
            if let element = first {
                first = nil
                return element
            }
            return rest.next()
        }
    }

    func makeIterator() -> Iterator { Iterator(first: first, rest: rest.makeIterator()) }
}
