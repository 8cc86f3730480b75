/// Where a volume's data lies in one range, for clients that skip what reads as zeros (NBD's
/// block status: `nbdcopy` and `qemu-img convert` then copy only the data of a sparse volume).
///
/// Invariants: `start <= end`; `data` is sorted, disjoint, not adjacent, and inside
/// `start..<end`; every byte of `start..<end` outside `data` reads as zeros. Calling a range
/// data is always true, so a map may say "data" where it cannot tell. `end` may stop short of
/// the range asked about (the map then covers a prefix of it), never beyond it.
public struct DataMap: Sendable, Equatable {
    public let start: UInt64
    public let end: UInt64
    public let data: [Range<UInt64>]

    /// A map of `start..<end` from data ranges in any order, clipped to it and merged.
    public init(start: UInt64, end: UInt64, data: [Range<UInt64>]) {
        self.start = start
        self.end = end
        var merged: [Range<UInt64>] = []
        for range in data.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            let lower = max(range.lowerBound, start), upper = min(range.upperBound, end)
            guard lower < upper else { continue }
            if let last = merged.last, last.upperBound >= lower {
                merged[merged.count - 1] = last.lowerBound..<max(last.upperBound, upper)
            } else {
                merged.append(lower..<upper)
            }
        }
        self.data = merged
    }

    /// All of `start..<end` as data.
    public static func allData(_ start: UInt64, _ end: UInt64) -> DataMap {
        DataMap(start: start, end: end, data: [start..<end])
    }

    /// The map as consecutive extents from `start` to `end`: each with its length and whether
    /// it reads as zeros (a hole).
    public var extents: [(length: UInt64, isHole: Bool)] {
        var extents: [(length: UInt64, isHole: Bool)] = []
        var cursor = start
        for range in data {
            if range.lowerBound > cursor { extents.append((range.lowerBound - cursor, true)) }
            extents.append((UInt64(range.count), false))
            cursor = range.upperBound
        }
        if cursor < end { extents.append((end - cursor, true)) }
        return extents
    }
}
