/// A set of chunk indexes below a fixed bound, one bit each.
///
/// Invariant: memory is `bound / 8` bytes, fixed at creation, whatever is inserted.
struct ChunkBitmap {
    private var words: [UInt64]
    let bound: UInt64

    init(bound: UInt64) {
        self.bound = bound
        words = [UInt64](repeating: 0, count: Int((bound + 63) / 64))
    }

    /// Inserts `chunk` (which must be below `bound`); returns false if it was already present.
    mutating func insert(_ chunk: ChunkIndex) -> Bool {
        let word = Int(chunk / 64)
        let bit = UInt64(1) << (chunk % 64)
        if words[word] & bit != 0 { return false }
        words[word] |= bit
        return true
    }
}
