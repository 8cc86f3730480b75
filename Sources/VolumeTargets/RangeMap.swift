/// Ranges marked in one span of a volume, for clients that want only part of it: where data
/// lies (`Volume.dataMap`: outside the ranges, the volume reads as zeros) or which chunks a
/// snapshot holds itself (`Snapshot.exceptionMap`). NBD's block status sends these maps, so
/// `nbdcopy` and `qemu-img convert` skip the holes of a sparse volume.
///
/// Invariants: `start <= end`; `ranges` is sorted, disjoint, not adjacent, and inside
/// `start..<end`. `end` may stop short of the span asked about (the map then covers a prefix of
/// it), never beyond it.
public struct RangeMap: Sendable, Equatable {
    public let start: UInt64
    public let end: UInt64
    public let ranges: [Range<UInt64>]

    /// A map of `start..<end` from ranges in any order, clipped to it and merged.
    public init(start: UInt64, end: UInt64, ranges: [Range<UInt64>]) {
        self.start = start
        self.end = end
        var merged: [Range<UInt64>] = []
        for range in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            let lower = max(range.lowerBound, start), upper = min(range.upperBound, end)
            guard lower < upper else { continue }
            if let last = merged.last, last.upperBound >= lower {
                merged[merged.count - 1] = last.lowerBound..<max(last.upperBound, upper)
            } else {
                merged.append(lower..<upper)
            }
        }
        self.ranges = merged
    }

    /// All of `start..<end` marked.
    public static func whole(_ start: UInt64, _ end: UInt64) -> RangeMap {
        RangeMap(start: start, end: end, ranges: [start..<end])
    }

    /// The map as consecutive extents from `start` to `end`: each with its length and whether
    /// it is marked (inside one of the ranges).
    public var extents: [(length: UInt64, marked: Bool)] {
        var extents: [(length: UInt64, marked: Bool)] = []
        var cursor = start
        for range in ranges {
            if range.lowerBound > cursor { extents.append((range.lowerBound - cursor, false)) }
            extents.append((UInt64(range.count), true))
            cursor = range.upperBound
        }
        if cursor < end { extents.append((end - cursor, false)) }
        return extents
    }

    /// The parts of `start..<end` outside every range, in order.
    public var gaps: [Range<UInt64>] {
        var gaps: [Range<UInt64>] = []
        var cursor = start
        for range in ranges {
            if range.lowerBound > cursor { gaps.append(cursor..<range.lowerBound) }
            cursor = range.upperBound
        }
        if cursor < end { gaps.append(cursor..<end) }
        return gaps
    }
}
