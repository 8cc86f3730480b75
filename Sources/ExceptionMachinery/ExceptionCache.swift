/// The completed exceptions of one store, held in memory whole or, with a budget, in part.
///
/// Unbounded (no budget, or a store without metadata areas), it is an `ExceptionTable`.
/// Bounded, buckets of the table are evicted (least recently used first) whenever its
/// `residentBytes` would exceed the budget, and the COW device's own metadata areas are the
/// backing store. At the first eviction the always-resident `CacheFilters` are built (a quarter
/// of the budget for a filter of every exception, five eighths for per-area filters and
/// ranges); the table keeps the rest. A lookup that misses an evicted bucket asks the
/// filters: "no" (the common case for chunks never written) costs no I/O; "maybe" names the
/// areas to read (`candidateAreas`), normally one. Small bookkeeping (recent inserts, chunks
/// known absent) is sized at a 512th of the budget.
///
/// Invariants: every exception inserted is either in the table or in an evicted bucket and
/// then in the filters of its area and the global filter (filters never forget); a miss in a
/// bucket that was never evicted is a definite "absent"; nothing here is needed for
/// correctness beyond what the metadata areas hold, so the cache is rebuilt from them at will.
public struct ExceptionCache: Sendable {
    /// The answer of a lookup.
    public enum Lookup: Sendable, Equatable {
        case mapped(ChunkIndex)
        case absent
        /// The answer is on disk: call `candidateAreas`, read them, `install`, then look again.
        case unloaded
    }

    /// What reading the metadata areas said about one chunk, and when: lets the reader use the
    /// answer even if the bucket was evicted again before it looked a second time.
    public struct Resolution: Sendable {
        public let chunk: ChunkIndex
        /// Where the chunk is stored, or nil: no exception.
        public let new: ChunkIndex?
        let generation: UInt64

        public init(chunk: ChunkIndex, new: ChunkIndex?, generation: UInt64) {
            self.chunk = chunk
            self.new = new
            self.generation = generation
        }
    }

    /// How much memory a cache may use, and its unit of eviction.
    public struct Budget: Sendable, Equatable {
        public var bytes: Int
        /// log2 of the origin chunks per bucket, the unit evicted and reloaded.
        public var bucketShift: Int

        public init(bytes: Int, bucketShift: Int = ExceptionTable.defaultBucketShift) {
            self.bytes = bytes
            self.bucketShift = bucketShift
        }
    }

    /// Hit, miss and read counts for status.
    public struct Figures: Sendable, Equatable, Codable {
        public var exceptions = 0
        public var residentExceptions = 0
        public var residentBytes = 0
        public var budgetBytes: Int?
        public var lookups = 0
        public var hits = 0
        public var areaReads = 0

        public init() {}

        /// Share of lookups answered without reading metadata.
        public var hitRate: Double { lookups == 0 ? 1 : Double(lookups - misses) / Double(lookups) }
        public var misses = 0
    }

    public private(set) var table: ExceptionTable
    public let budget: Int?
    private let layout: CowLayout?
    private let capacity: UInt64
    /// Nil until the first eviction: while the table is whole, nothing else is needed.
    private var filters: CacheFilters?
    /// Buckets evicted at least once (a bitmap by bucket number): a miss there is not a
    /// definite "absent".
    private var incomplete: [UInt64] = []
    private var lastUse: [ChunkIndex: UInt64] = [:]
    private var clock: UInt64 = 0
    /// Chunks found absent after reading their candidate areas (bounded; cleared when full).
    private var knownAbsent: Set<ChunkIndex> = []
    /// Counts inserts, so a resolution that raced with one does not mark a chunk absent.
    public private(set) var generation: UInt64 = 0
    /// The chunks of the latest inserts, by generation (a ring): tells whether a chunk found
    /// absent has been inserted since.
    private var recentInserts: [ChunkIndex] = []
    public private(set) var count = 0
    private var figures = Figures()

    /// - Parameters:
    ///   - budget: what the cache may occupy (tables and filters); nil for no limit.
    ///   - layout: the store's area layout; without one (transient stores) there is no backing
    ///     store, so the cache is unbounded whatever the budget.
    ///   - capacity: the most exceptions the store can hold (sizes the filters).
    public init(budget limit: Budget? = nil, layout: CowLayout? = nil, capacity: UInt64 = 0) {
        table = ExceptionTable(bucketShift: limit?.bucketShift ?? ExceptionTable.defaultBucketShift)
        let bounded = limit != nil && layout != nil
        self.budget = bounded ? limit?.bytes : nil
        self.layout = bounded ? layout : nil
        self.capacity = capacity
        guard let budget = self.budget else { return }
        recentInserts = [ChunkIndex](repeating: 0, count: min(1024, max(16, budget / 512)))
    }

    /// Whether `old` has an exception, and where. `resolved` is what a `resolve` of this chunk
    /// found; it answers when the table no longer holds the chunk's bucket.
    public mutating func lookup(_ old: ChunkIndex, resolved: Resolution? = nil) -> Lookup {
        figures.lookups += 1
        if let new = table.lookup(old) {
            figures.hits += 1
            if budget != nil { touch(table.bucket(of: old)) }
            return .mapped(new)
        }
        guard budget != nil, isIncomplete(table.bucket(of: old)) else { return .absent }
        if let resolved, resolved.chunk == old {
            // Completed exceptions stay (only a merge removes them, with the table whole).
            if let new = resolved.new { return .mapped(new) }
            if insertedSince(resolved.generation, old) == false { return .absent }
        }
        if knownAbsent.contains(old) || filters?.mayContain(old) == false { return .absent }
        if candidateAreas(for: old).isEmpty { return .absent }
        figures.misses += 1
        return .unloaded
    }

    /// Areas whose filters say they may hold `old`, newest first.
    public func candidateAreas(for old: ChunkIndex) -> [UInt64] { filters?.candidateAreas(for: old) ?? [] }

    /// Records `old -> new`. Returns false if `old` already has a resident exception.
    @discardableResult
    public mutating func insert(old: ChunkIndex, new: ChunkIndex) -> Bool {
        guard table.insert(old: old, new: new) else { return false }
        count += 1
        generation += 1
        guard budget != nil, let layout else { return true }
        recentInserts[Int(generation % UInt64(recentInserts.count))] = old
        knownAbsent.remove(old)
        filters?.remember(old, inArea: layout.area(ofData: new))
        touch(table.bucket(of: old))
        evictToBudget(keeping: table.bucket(of: old))
        return true
    }

    /// Forgets `old` (merged back). Filters keep it: a later lookup may read an area for nothing.
    @discardableResult
    public mutating func remove(old: ChunkIndex) -> Bool {
        guard table.remove(old: old) else { return false }
        count -= 1
        return true
    }

    /// Puts back the records of `area` (just read) that share `old`'s bucket; returns where
    /// `old` is stored if it is among them. Records already resident are skipped.
    public mutating func install(_ records: [DiskException], fromArea area: UInt64, for old: ChunkIndex) -> ChunkIndex? {
        figures.areaReads += 1
        let bucket = table.bucket(of: old)
        var found: ChunkIndex?
        for record in records where table.bucket(of: record.old) == bucket {
            table.insert(old: record.old, new: record.new)
            if record.old == old { found = record.new }
        }
        touch(bucket)
        evictToBudget(keeping: bucket)
        return found
    }

    /// Notes that `old` was in none of its candidate areas, read since `generation` was taken
    /// (unless an exception was inserted meanwhile: it might be `old`'s).
    public mutating func markAbsent(_ old: ChunkIndex, since generation: UInt64) {
        guard generation == self.generation, let budget else { return }
        if knownAbsent.count >= max(16, budget / 512) { knownAbsent.removeAll(keepingCapacity: true) }
        knownAbsent.insert(old)
        evictToBudget(keeping: table.bucket(of: old))
    }

    /// Whether `old` was inserted after `generation`; nil when too many inserts happened since
    /// to tell.
    func insertedSince(_ generation: UInt64, _ old: ChunkIndex) -> Bool? {
        let since = self.generation - generation
        if since == 0 { return false }
        guard since < UInt64(recentInserts.count) else { return nil }
        for g in (generation + 1)...self.generation where recentInserts[Int(g % UInt64(recentInserts.count))] == old { return true }
        return false
    }

    /// The exception of `old` if it is resident (for callers that loaded everything).
    public func residentLookup(_ old: ChunkIndex) -> ChunkIndex? { table.lookup(old) }

    /// Heap bytes of the table, filters and bookkeeping.
    public var residentBytes: Int {
        return table.residentBytes + (filters?.bytes ?? 0) + incomplete.capacity * 8 + lastUse.capacity * 16 + knownAbsent.capacity * 8
            + recentInserts.capacity * 8
    }

    public var currentFigures: Figures {
        var result = figures
        result.exceptions = count
        result.residentExceptions = table.count
        result.residentBytes = residentBytes
        result.budgetBytes = budget
        return result
    }

    // MARK: eviction

    private mutating func touch(_ bucket: ChunkIndex) {
        clock += 1
        lastUse[bucket] = clock
    }

    /// Evicts least recently used buckets (never `kept`) until the cache fits its budget,
    /// down to seven eighths of it so that evictions come in batches.
    private mutating func evictToBudget(keeping kept: ChunkIndex) {
        guard let budget, let layout, residentBytes > budget else { return }
        if filters == nil { filters = Self.buildFilters(from: table, budget: budget, capacity: capacity, layout: layout) }
        let target = budget - budget / 8
        let order = lastUse.sorted { $0.value < $1.value }.map(\.key)
        for bucket in order where bucket != kept {
            table.removeBucket(bucket)
            lastUse[bucket] = nil
            markIncomplete(bucket)
            if residentBytes <= target { break }
        }
        table.shrinkIfSparse()
        lastUse.compactIfSparse()
    }

    /// Filters of every exception, from the table while it is still whole.
    private static func buildFilters(from table: ExceptionTable, budget: Int, capacity: UInt64, layout: CowLayout) -> CacheFilters {
        var filters = CacheFilters(budget: budget, capacity: capacity, layout: layout)
        for run in table.runs {
            for step in 0..<UInt64(run.length) { filters.remember(run.old + step, inArea: layout.area(ofData: run.new + step)) }
        }
        return filters
    }

    private func isIncomplete(_ bucket: ChunkIndex) -> Bool {
        let word = Int(bucket >> 6)
        return word < incomplete.count && incomplete[word] & (1 << (bucket & 63)) != 0
    }

    private mutating func markIncomplete(_ bucket: ChunkIndex) {
        let word = Int(bucket >> 6)
        if word >= incomplete.count { incomplete.append(contentsOf: repeatElement(0, count: word + 1 - incomplete.count)) }
        incomplete[word] |= 1 << (bucket & 63)
    }
}

extension Dictionary {
    /// Gives back hash-table memory when at most a quarter of the capacity is used (a
    /// dictionary never shrinks by itself after removals).
    mutating func compactIfSparse() {
        if capacity > 4 * count + 16 { self = Dictionary(uniqueKeysWithValues: map { ($0.key, $0.value) }) }
    }
}
