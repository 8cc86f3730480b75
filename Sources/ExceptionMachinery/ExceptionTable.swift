/// The completed exceptions of one store: which origin chunks live at which store chunks.
///
/// Consecutive exceptions (origin chunks c, c+1, ... stored at n, n+1, ...) are kept as one
/// run, so a sequentially written snapshot costs one entry per run, not per chunk. Runs never
/// cross a bucket boundary (`bucketChunks` origin chunks), which keeps every lookup to one bucket.
///
/// Invariants: an origin chunk appears in at most one run; `count` is the number of chunks
/// mapped; runs in a bucket are disjoint.
public struct ExceptionTable: Sendable {
    /// One run of consecutive exceptions.
    public struct Run: Sendable, Equatable {
        public var old: ChunkIndex
        public var new: ChunkIndex
        public var length: UInt32

        public func contains(_ chunk: ChunkIndex) -> Bool { chunk >= old && chunk - old < UInt64(length) }
    }

    static let bucketShift: UInt64 = 8
    public static var bucketChunks: UInt64 { 1 << bucketShift }

    private var buckets: [ChunkIndex: [Run]] = [:]
    public private(set) var count = 0
    public private(set) var runCount = 0

    public init() {}

    public var isEmpty: Bool { count == 0 }

    /// Where `old` is stored, if it has an exception.
    public func lookup(_ old: ChunkIndex) -> ChunkIndex? {
        guard let runs = buckets[old >> Self.bucketShift] else { return nil }
        for run in runs where run.contains(old) { return run.new + (old - run.old) }
        return nil
    }

    public func contains(_ old: ChunkIndex) -> Bool { lookup(old) != nil }

    /// Records `old -> new`. Returns false (and changes nothing) if `old` already has an exception.
    @discardableResult
    public mutating func insert(old: ChunkIndex, new: ChunkIndex) -> Bool {
        let key = old >> Self.bucketShift
        var runs = buckets[key, default: []]
        if runs.contains(where: { $0.contains(old) }) { return false }
        count += 1
        if let i = runs.firstIndex(where: { $0.old + UInt64($0.length) == old && $0.new + UInt64($0.length) == new }) {
            runs[i].length += 1
            if let j = runs.firstIndex(where: { $0.old == old + 1 && $0.new == new + 1 }) {
                runs[i].length += runs[j].length
                runs.remove(at: j)
                runCount -= 1
            }
        } else if let j = runs.firstIndex(where: { $0.old == old + 1 && $0.new == new + 1 }) {
            runs[j].old = old
            runs[j].new = new
            runs[j].length += 1
        } else {
            runs.append(Run(old: old, new: new, length: 1))
            runCount += 1
        }
        buckets[key] = runs
        return true
    }

    /// Forgets the exception of `old` (after a merge copied it back). Returns whether it existed.
    @discardableResult
    public mutating func remove(old: ChunkIndex) -> Bool {
        let key = old >> Self.bucketShift
        guard var runs = buckets[key], let i = runs.firstIndex(where: { $0.contains(old) }) else { return false }
        let run = runs[i]
        let before = UInt32(old - run.old)
        let after = run.length - before - 1
        runs.remove(at: i)
        runCount -= 1
        if before > 0 {
            runs.append(Run(old: run.old, new: run.new, length: before))
            runCount += 1
        }
        if after > 0 {
            runs.append(Run(old: old + 1, new: run.new + UInt64(before) + 1, length: after))
            runCount += 1
        }
        buckets[key] = runs.isEmpty ? nil : runs
        count -= 1
        return true
    }

    /// An estimate of the heap bytes the table occupies: dictionary slots and run arrays.
    public var residentBytes: Int {
        let slot = MemoryLayout<ChunkIndex>.stride + MemoryLayout<[Run]>.stride
        return buckets.capacity * slot + buckets.values.reduce(0) { $0 + 32 + $1.capacity * MemoryLayout<Run>.stride }
    }

    /// Every run, ordered by origin chunk.
    public var runs: [Run] {
        buckets.keys.sorted().flatMap { key in buckets[key]!.sorted { $0.old < $1.old } }
    }
}
