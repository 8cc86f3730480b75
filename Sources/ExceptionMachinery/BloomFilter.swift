/// A Bloom filter over chunk numbers: "certainly not present" or "maybe present".
///
/// Invariant: `mayContain(x)` is true for every `x` ever inserted (no false negatives); false
/// positives occur at the rate its size and `hashes` give (about 0.6185^(bits per entry)).
public struct BloomFilter: Sendable {
    private var words: [UInt64]
    private let hashes: Int
    private let size: UInt64

    /// A filter of `bits` bits (rounded down to whole 64-bit words, at least one), tuned for
    /// `expectedEntries`.
    public init(bits: Int, expectedEntries: Int) {
        let count = max(1, bits / 64)
        words = [UInt64](repeating: 0, count: count)
        size = UInt64(count * 64)
        let perEntry = Double(size) / Double(max(expectedEntries, 1))
        hashes = min(16, max(1, Int((perEntry * 0.693).rounded())))
    }

    public var bytes: Int { words.count * 8 }

    public mutating func insert(_ value: UInt64) {
        var (h1, h2) = Self.hashPair(value)
        for _ in 0..<hashes {
            let bit = h1.multipliedFullWidth(by: size).high
            words[Int(bit >> 6)] |= 1 << (bit & 63)
            h1 &+= h2
            h2 &+= 1
        }
    }

    public func mayContain(_ value: UInt64) -> Bool {
        var (h1, h2) = Self.hashPair(value)
        for _ in 0..<hashes {
            let bit = h1.multipliedFullWidth(by: size).high
            if words[Int(bit >> 6)] & (1 << (bit & 63)) == 0 { return false }
            h1 &+= h2
            h2 &+= 1
        }
        return true
    }

    /// Two independent 64-bit hashes (a fixed mixer, so filters rebuild identically).
    private static func hashPair(_ value: UInt64) -> (UInt64, UInt64) {
        let h1 = ChunkHash.mix(value &+ ChunkHash.increment)
        var m = h1 &* 0xD6E8_FEB8_6659_FD93
        m ^= m >> 32
        let h2 = m | 1
        return (h1, h2)
    }
}
