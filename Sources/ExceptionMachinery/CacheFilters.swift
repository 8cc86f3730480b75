/// What a bounded `ExceptionCache` knows of exceptions it evicted, without reading them: one
/// Bloom filter over every exception, and per metadata area its origin-chunk range and a
/// filter of its chunks (`AreaFilterMatrix`). Built when the cache first evicts (until then
/// the table is whole).
///
/// Sizing: the global filter gets a quarter of the budget, the area filters five eighths
/// between them. For the 2003 example at a 1 MiB budget (327,680 exceptions in 320 areas) that
/// is 6.4 bits per exception globally (about one chunk without an exception in twenty gets
/// past it) and 16 bits in its area's filter (a wrong area is named about once in three scans).
///
/// Invariant: every exception ever inserted is in `everything` and in the summary of its area.
struct CacheFilters: Sendable {
    private var everything: BloomFilter
    private var matrix: AreaFilterMatrix
    private var lowest: [ChunkIndex] = []
    private var highest: [ChunkIndex] = []

    init(budget: Int, capacity: UInt64, layout: CowLayout) {
        let entries = Int(max(capacity, 1))
        everything = BloomFilter(bits: budget * 2, expectedEntries: entries)
        let areaCount = max(1, entries / layout.exceptionsPerArea + 1)
        matrix = AreaFilterMatrix(bitsPerArea: budget * 5 / areaCount, entriesPerArea: layout.exceptionsPerArea,
                                  expectedAreas: areaCount)
    }

    var bytes: Int { everything.bytes + matrix.bytes + (lowest.capacity + highest.capacity) * 8 }

    mutating func remember(_ old: ChunkIndex, inArea area: UInt64) {
        while matrix.areaCount <= Int(area) {
            matrix.addArea()
            lowest.append(.max)
            highest.append(0)
        }
        lowest[Int(area)] = min(lowest[Int(area)], old)
        highest[Int(area)] = max(highest[Int(area)], old)
        matrix.insert(old, area: Int(area))
        everything.insert(old)
    }

    func mayContain(_ old: ChunkIndex) -> Bool { everything.mayContain(old) }

    /// Areas whose summaries say they may hold `old`, newest first.
    func candidateAreas(for old: ChunkIndex) -> [UInt64] {
        guard everything.mayContain(old) else { return [] }
        return matrix.candidates(for: old).filter { old >= lowest[$0] && old <= highest[$0] }.map(UInt64.init)
    }
}
