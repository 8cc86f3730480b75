/// A small, fast, seedable random generator (SplitMix64) so randomized tests can be replayed:
/// every test prints its seed on failure, and `SNAPVOL_SEED` reruns it.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    public let seed: UInt64
    private var state: UInt64

    public init(seed: UInt64) {
        self.seed = seed
        state = seed
    }

    /// A generator seeded from `SNAPVOL_SEED` if set, else from the system's randomness.
    public static func fromEnvironment() -> SeededGenerator {
        if let text = Environment.value("SNAPVOL_SEED"), let seed = UInt64(text) { return SeededGenerator(seed: seed) }
        return SeededGenerator(seed: UInt64.random(in: 0...UInt64.max))
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
