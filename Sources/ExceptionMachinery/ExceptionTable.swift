/// Completed exceptions held in memory: which origin chunks live at which store chunks.
///
/// Compact by construction: origin chunks are grouped in buckets of `bucketChunks`; a bucket
/// is a sorted array of 8-byte runs (start within the bucket, length, first store chunk), so a
/// sequentially written snapshot costs 8 bytes per 4096 chunks, and a random one about 8 bytes
/// per exception. Lookups are a hash of the bucket (`BucketMap`) and a branch-free binary
/// search within it.
///
/// Invariants: an origin chunk appears in at most one run; runs in a bucket are sorted by start,
/// disjoint, and adjacent runs are merged whenever both their origin and store chunks are
/// consecutive; `count` is the number of chunks mapped. Store chunks are below 2^32 (callers
/// refuse larger COW devices; 16 TiB at 4 KiB chunks).
public struct ExceptionTable: Sendable {
    /// One run of consecutive exceptions, as callers see it.
    public struct Run: Sendable, Equatable {
        public var old: ChunkIndex
        public var new: ChunkIndex
        public var length: UInt32

        public func contains(_ chunk: ChunkIndex) -> Bool { chunk >= old && chunk - old < UInt64(length) }
    }

    /// A run inside a bucket: 8 bytes.
    struct PackedRun: Sendable {
        var start: UInt16
        var length: UInt16
        var new: UInt32

        var end: Int { Int(start) + Int(length) }
    }

    /// The default bucket: 4096 origin chunks.
    public static let defaultBucketShift = 12
    /// The largest store chunk a table can hold.
    public static let largestStoreChunk = ChunkIndex(UInt32.max)

    private var buckets = BucketMap<ContiguousArray<PackedRun>>()
    /// log2 of the origin chunks per bucket (at most 16: run starts are 16-bit).
    public let bucketShift: Int
    public private(set) var count = 0
    public private(set) var runCount = 0
    /// Bytes of the run arrays (headers and capacity), kept up to date by every edit.
    private var arrayBytes = 0

    public init(bucketShift: Int = ExceptionTable.defaultBucketShift) {
        precondition((0...16).contains(bucketShift), "a bucket holds 1 to 65536 chunks")
        self.bucketShift = bucketShift
    }

    public var isEmpty: Bool { count == 0 }
    public var bucketChunks: UInt64 { 1 << UInt64(bucketShift) }

    /// The bucket holding `old`.
    public func bucket(of old: ChunkIndex) -> ChunkIndex { old >> UInt64(bucketShift) }

    /// Where `old` is stored, if it has an exception.
    public func lookup(_ old: ChunkIndex) -> ChunkIndex? {
        guard let runs = buckets[bucket(of: old)] else { return nil }
        let offset = Int(old & (bucketChunks - 1))
        return runs.withUnsafeBufferPointer { runs in
            let index = Self.lastRun(startingAtOrBefore: offset, in: runs)
            guard index >= 0, offset < runs[index].end else { return nil }
            return ChunkIndex(runs[index].new) + ChunkIndex(offset - Int(runs[index].start))
        }
    }

    public func contains(_ old: ChunkIndex) -> Bool { lookup(old) != nil }

    /// Records `old -> new`. Returns false (and changes nothing) if `old` already has an exception.
    @discardableResult
    public mutating func insert(old: ChunkIndex, new: ChunkIndex) -> Bool {
        precondition(new <= Self.largestStoreChunk, "store chunk \(new) is beyond what a table holds")
        return edit(old, chunks: 1) { runs, offset in
            let before = Self.lastRun(startingAtOrBefore: offset, in: runs)
            if before >= 0 && offset < runs[before].end { return nil }
            let joinsBefore = before >= 0 && runs[before].end == offset
                && UInt64(runs[before].new) + UInt64(runs[before].length) == new
            let after = before + 1
            let joinsAfter = after < runs.count && Int(runs[after].start) == offset + 1 && UInt64(runs[after].new) == new + 1
            switch (joinsBefore, joinsAfter) {
            case (true, true):
                runs[before].length += 1 + runs[after].length
                runs.remove(at: after)
                return -1
            case (true, false):
                runs[before].length += 1
            case (false, true):
                runs[after].start -= 1
                runs[after].length += 1
                runs[after].new -= 1
            case (false, false):
                runs.insert(PackedRun(start: UInt16(offset), length: 1, new: UInt32(new)), at: after)
                return 1
            }
            return 0
        }
    }

    /// Forgets the exception of `old` (after a merge copied it back). Returns whether it existed.
    @discardableResult
    public mutating func remove(old: ChunkIndex) -> Bool {
        edit(old, chunks: -1) { runs, offset in
            let index = Self.lastRun(startingAtOrBefore: offset, in: runs)
            guard index >= 0, offset < runs[index].end else { return nil }
            let run = runs[index]
            let headLength = offset - Int(run.start)
            let tailLength = run.end - offset - 1
            var replacement: [PackedRun] = []
            if headLength > 0 { replacement.append(PackedRun(start: run.start, length: UInt16(headLength), new: run.new)) }
            if tailLength > 0 {
                replacement.append(PackedRun(start: UInt16(offset + 1), length: UInt16(tailLength),
                                             new: run.new + UInt32(headLength) + 1))
            }
            runs.replaceSubrange(index...index, with: replacement)
            return replacement.count - 1
        }
    }

    /// Runs `change` on the runs of `old`'s bucket with `old`'s offset in it. `change` returns
    /// how the number of runs changed, or nil if it changed nothing; on a change the counts move
    /// by `chunks` and that many runs. Returns whether anything changed.
    private mutating func edit(_ old: ChunkIndex, chunks: Int,
                               _ change: (inout ContiguousArray<PackedRun>, Int) -> Int?) -> Bool {
        let offset = Int(old & (bucketChunks - 1))
        var runDelta: Int?
        modify(bucket(of: old)) { runs in runDelta = change(&runs, offset) }
        guard let runDelta else { return false }
        count += chunks
        runCount += runDelta
        return true
    }

    /// Drops a whole bucket (cache eviction); returns how many exceptions it held.
    @discardableResult
    public mutating func removeBucket(_ key: ChunkIndex) -> Int {
        guard let runs = buckets.removeValue(forKey: key) else { return 0 }
        arrayBytes -= Self.bytes(of: runs)
        let chunks = runs.reduce(0) { $0 + Int($1.length) }
        count -= chunks
        runCount -= runs.count
        return chunks
    }

    /// Gives back hash-table memory after many buckets were dropped.
    public mutating func shrinkIfSparse() {
        buckets.compactIfSparse()
    }

    /// Heap bytes the table occupies: hash slots plus run arrays (with their headers).
    public var residentBytes: Int {
        let slot = MemoryLayout<ChunkIndex>.stride + MemoryLayout<ContiguousArray<PackedRun>>.stride
        return buckets.capacity * slot + arrayBytes
    }

    private static func bytes(of runs: ContiguousArray<PackedRun>) -> Int {
        runs.capacity == 0 ? 0 : 32 + runs.capacity * MemoryLayout<PackedRun>.stride
    }

    /// Every run, ordered by origin chunk.
    public var runs: [Run] {
        buckets.entries.sorted { $0.key < $1.key }.flatMap { key, runs in
            runs.map { Run(old: (key << UInt64(bucketShift)) + ChunkIndex($0.start), new: ChunkIndex($0.new), length: UInt32($0.length)) }
        }
    }

    // MARK: helpers

    /// Index of the last run whose start is at most `offset`, or -1.
    private static func lastRun(startingAtOrBefore offset: Int, in runs: ContiguousArray<PackedRun>) -> Int {
        runs.withUnsafeBufferPointer { lastRun(startingAtOrBefore: offset, in: $0) }
    }

    /// Index of the last run whose start is at most `offset`, or -1. Branch-free halving: the
    /// lookups of random reads made the branches of a plain binary search unpredictable.
    private static func lastRun(startingAtOrBefore offset: Int, in runs: UnsafeBufferPointer<PackedRun>) -> Int {
        guard !runs.isEmpty else { return -1 }
        var base = 0, remaining = runs.count
        while remaining > 1 {
            let half = remaining / 2
            base = Int(runs[base + half].start) <= offset ? base + half : base
            remaining -= half
        }
        return Int(runs[base].start) <= offset ? base : -1
    }

    /// Edits a bucket in place (no copy of its array), dropping it when it becomes empty.
    /// One hash lookup for the edit; a second only when the bucket empties.
    private mutating func modify(_ key: ChunkIndex, _ body: (inout ContiguousArray<PackedRun>) -> Void) {
        let (before, after, empty) = buckets.update(key, inserting: { [] }) { Self.measuring(&$0, body) }
        if empty { buckets.removeValue(forKey: key) }
        arrayBytes += (empty ? 0 : after) - before
    }

    private static func measuring(_ runs: inout ContiguousArray<PackedRun>,
                                  _ body: (inout ContiguousArray<PackedRun>) -> Void) -> (before: Int, after: Int, empty: Bool) {
        let before = bytes(of: runs)
        body(&runs)
        return (before, bytes(of: runs), runs.isEmpty)
    }
}
