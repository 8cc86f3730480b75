/// The one 64-bit mixer behind every hash of chunk numbers (Bloom filters, the area filter
/// matrix) and seeded patterns: SplitMix64's finalizer. Fixed, so anything built from it is
/// rebuilt identically in every process.
public enum ChunkHash {
    /// The golden-ratio increment SplitMix64 adds between values.
    public static let increment: UInt64 = 0x9E37_79B9_7F4A_7C15

    /// Mixes the bits of `value` (a bijection with good avalanche).
    public static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
