/// One small Bloom filter per metadata area, stored transposed: a value hashes to two 64-bit
/// word positions, each with a bit mask, and those words of every area's filter sit side by
/// side, so asking "which areas may hold this chunk?" reads two contiguous rows instead of
/// touching every area's filter (a blocked Bloom filter per area, two blocks of 64 bits).
///
/// Invariant: `candidates(for: x)` includes every area `x` was inserted into.
struct AreaFilterMatrix: Sendable {
    private var words: [UInt64] = []
    /// Words per area filter.
    let rows: Int
    /// Areas the storage has room for (the row stride).
    private var columns = 0
    private(set) var areaCount = 0
    private let hashes: Int

    /// - Parameters:
    ///   - bitsPerArea: filter size of each area (rounded down to whole words, at least one).
    ///   - entriesPerArea: records an area holds (tunes the number of bits set per entry).
    ///   - expectedAreas: columns to reserve at first.
    init(bitsPerArea: Int, entriesPerArea: Int, expectedAreas: Int) {
        rows = max(1, bitsPerArea / 64)
        let perEntry = Double(rows * 64) / Double(max(entriesPerArea, 1))
        // Two blocks per entry, each with `hashes` bits.
        hashes = min(10, max(1, Int((perEntry * 0.35).rounded())))
        reserve(max(1, expectedAreas))
    }

    var bytes: Int { words.capacity * 8 }

    /// Adds an empty filter for the next area.
    mutating func addArea() {
        if areaCount == columns { reserve(columns * 2) }
        areaCount += 1
    }

    mutating func insert(_ value: UInt64, area: Int) {
        let p = probe(value)
        words[p.row1 * columns + area] |= p.mask1
        words[p.row2 * columns + area] |= p.mask2
    }

    /// Areas whose filters may hold `value`, newest first.
    func candidates(for value: UInt64) -> [Int] {
        let p = probe(value)
        var result: [Int] = []
        words.withUnsafeBufferPointer { all in
            let (first, second) = (p.row1 * columns, p.row2 * columns)
            var area = areaCount
            while area > 0 {
                area -= 1
                if all[first + area] & p.mask1 == p.mask1 && all[second + area] & p.mask2 == p.mask2 { result.append(area) }
            }
        }
        return result
    }

    private func probe(_ value: UInt64) -> (row1: Int, mask1: UInt64, row2: Int, mask2: UInt64) {
        let h1 = ChunkHash.mix(value &+ ChunkHash.increment)
        let h2 = ChunkHash.mix(h1 ^ 0x632B_E59B_D9B4_E019)
        let h3 = ChunkHash.mix(h2 ^ 0x8CB9_2BA7_2F3D_8DD7)
        var mask1: UInt64 = 0, mask2: UInt64 = 0
        for i in 0..<hashes {
            mask1 |= 1 << ((h2 >> UInt64(6 * i)) & 63)
            mask2 |= 1 << ((h3 >> UInt64(6 * i)) & 63)
        }
        let row1 = Int(h1.multipliedFullWidth(by: UInt64(rows)).high)
        let row2 = Int((h1 << 32 | h1 >> 32).multipliedFullWidth(by: UInt64(rows)).high)
        return (row1, mask1, row2, mask2)
    }

    /// Re-lays the rows out with room for `newColumns` areas.
    private mutating func reserve(_ newColumns: Int) {
        var grown = [UInt64](repeating: 0, count: rows * newColumns)
        for row in 0..<rows where columns > 0 {
            for area in 0..<areaCount { grown[row * newColumns + area] = words[row * columns + area] }
        }
        words = grown
        columns = newColumns
    }
}
