/// What a bounded `ExceptionCache` knows of exceptions it evicted, without reading them: one
/// Bloom filter over every exception, and per metadata area its origin-chunk range and a
/// filter of its chunks. Built when the cache first evicts (until then the table is whole).
///
/// Sizing: the global filter gets an eighth of the budget, the area filters five eighths
/// between them. For the 2003 example at a 1 MiB budget (327,680 exceptions in 320 areas) that
/// is 3.2 bits per exception globally and 16 per area filter: a false "maybe" sends about one
/// lookup in six to the area filters, and they name a wrong area about once in seven scans.
///
/// Invariant: every exception ever inserted is in `everything` and in the summary of its area.
struct CacheFilters: Sendable {
    /// What is known of one metadata area without reading it.
    struct AreaSummary: Sendable {
        var lowest = ChunkIndex.max
        var highest: ChunkIndex = 0
        var filter: BloomFilter

        func mayHold(_ old: ChunkIndex) -> Bool { old >= lowest && old <= highest && filter.mayContain(old) }
    }

    private var everything: BloomFilter
    private var areas: [AreaSummary] = []
    private let areaFilterBits: Int
    private let perArea: Int
    private(set) var bytes: Int

    init(budget: Int, capacity: UInt64, layout: CowLayout) {
        let entries = Int(max(capacity, 1))
        everything = BloomFilter(bits: budget, expectedEntries: entries)
        perArea = layout.exceptionsPerArea
        let areaCount = max(1, entries / perArea + 1)
        areaFilterBits = max(64, budget * 5 / areaCount)
        bytes = everything.bytes
    }

    mutating func remember(_ old: ChunkIndex, inArea area: UInt64) {
        while areas.count <= Int(area) {
            areas.append(AreaSummary(filter: BloomFilter(bits: areaFilterBits, expectedEntries: perArea)))
            bytes += areas[areas.count - 1].filter.bytes + 16
        }
        areas[Int(area)].lowest = min(areas[Int(area)].lowest, old)
        areas[Int(area)].highest = max(areas[Int(area)].highest, old)
        areas[Int(area)].filter.insert(old)
        everything.insert(old)
    }

    func mayContain(_ old: ChunkIndex) -> Bool { everything.mayContain(old) }

    /// Areas whose summaries say they may hold `old`, newest first.
    func candidateAreas(for old: ChunkIndex) -> [UInt64] {
        var result: [UInt64] = []
        var area = areas.count
        while area > 0 {
            area -= 1
            if areas[area].mayHold(old) { result.append(UInt64(area)) }
        }
        return result
    }
}
