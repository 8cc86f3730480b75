/// A hash map from bucket numbers (an origin chunk shifted right) to values, for the exception
/// table: open addressing with linear probing and a multiplicative hash, so a lookup costs a
/// multiply, a shift and usually one probe. `Dictionary` hashes every key with SipHash: with
/// it (and a branching search) a lookup in a sequentially written table took 25-31 ns, with
/// this map 10 ns (Docs/PERFORMANCE-HISTORY.md, session 8). Swift offers no way to give a `Dictionary`
/// a cheaper hash, and swift-collections has no such map. The keys are bucket numbers of one device, not strings from outside, so an
/// unseeded hash is enough: a client choosing its offsets can at worst slow its own volume.
///
/// Invariants: `keys.count == values.count` is a power of two (or zero); `Self.vacant` marks a
/// free slot and is never a key (bucket numbers are at most 2^64 - 2: chunks are counted in
/// 512-byte units or more); no vacant slot lies between a key's home slot and the slot
/// holding it (removal shifts keys back instead of leaving tombstones); at most three quarters
/// of the slots are taken.
struct BucketMap<Value> {
    private static var vacant: UInt64 { .max }

    private var keys: ContiguousArray<UInt64> = []
    private var values: ContiguousArray<Value?> = []
    private(set) var count = 0

    var isEmpty: Bool { count == 0 }
    /// Slots allocated (taken or free).
    var capacity: Int { keys.count }

    /// The value of `key`, if it has one.
    subscript(key: UInt64) -> Value? {
        guard let slot = slot(of: key) else { return nil }
        return values[slot]
    }

    /// Runs `body` on the value of `key` in place, inserting `make()` first if it has none.
    mutating func update<R>(_ key: UInt64, inserting make: () -> Value, _ body: (inout Value) -> R) -> R {
        let slot = slot(of: key) ?? insert(key, make())
        return body(&values[slot]!)
    }

    /// Removes `key` and returns its value, if it had one.
    @discardableResult
    mutating func removeValue(forKey key: UInt64) -> Value? {
        guard var hole = slot(of: key) else { return nil }
        let removed = values[hole].take()
        var next = hole
        while true {
            next = (next + 1) & mask
            guard keys[next] != Self.vacant else { break }
            let home = self.home(of: keys[next])
            // The key at `next` may fill the hole unless its home lies cyclically in (hole, next].
            let staysPut = hole <= next ? (hole < home && home <= next) : (hole < home || home <= next)
            if staysPut { continue }
            keys[hole] = keys[next]
            values[hole] = values[next].take()
            hole = next
        }
        keys[hole] = Self.vacant
        count -= 1
        return removed
    }

    /// Every key with its value, in no particular order.
    var entries: [(key: UInt64, value: Value)] {
        keys.indices.compactMap { keys[$0] == Self.vacant ? nil : (keys[$0], values[$0]!) }
    }

    /// Gives back slots after many removals: rebuilt when at most a quarter of them is taken.
    mutating func compactIfSparse() {
        guard capacity > 4 * count + 16 else { return }
        if count == 0 { self = BucketMap() } else { rebuild(slots: Self.slots(for: count)) }
    }

    // MARK: slots

    private var mask: Int { keys.count - 1 }

    private func home(of key: UInt64) -> Int {
        // Fibonacci hashing: the top bits of key * 2^64/phi, spread over the table.
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> UInt64(64 - keys.count.trailingZeroBitCount))
    }

    private func slot(of key: UInt64) -> Int? {
        guard count > 0 else { return nil }
        var slot = home(of: key)
        while true {
            let found = keys[slot]
            if found == key { return slot }
            if found == Self.vacant { return nil }
            slot = (slot + 1) & mask
        }
    }

    private mutating func insert(_ key: UInt64, _ value: Value) -> Int {
        precondition(key != Self.vacant, "bucket \(key) cannot be a key")
        if 4 * (count + 1) > 3 * capacity { rebuild(slots: Swift.max(16, 2 * capacity)) }
        var slot = home(of: key)
        while keys[slot] != Self.vacant { slot = (slot + 1) & mask }
        keys[slot] = key
        values[slot] = value
        count += 1
        return slot
    }

    private mutating func rebuild(slots: Int) {
        let old = entries
        keys = ContiguousArray(repeating: Self.vacant, count: slots)
        values = ContiguousArray(repeating: nil, count: slots)
        count = 0
        for (key, value) in old { _ = insert(key, value) }
    }

    /// The smallest power of two holding `count` keys at most three quarters full.
    private static func slots(for count: Int) -> Int {
        var slots = 16
        while 4 * count > 3 * slots { slots *= 2 }
        return slots
    }
}

extension BucketMap: Sendable where Value: Sendable {}
