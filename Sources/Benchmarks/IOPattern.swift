import ExceptionMachinery

/// A list of requests a workload sends, in order: fio's `rw=write`/`rw=randwrite` streams.
///
/// Invariant: every request lies inside `[0, volumeBytes)`; random patterns visit distinct,
/// block-aligned offsets chosen by a seeded generator, so two runs send the same stream.
public struct IOPattern: Sendable {
    public let name: String
    public let blockBytes: Int
    public let offsets: [UInt64]

    public var bytes: UInt64 { UInt64(offsets.count) * UInt64(blockBytes) }

    /// Every block of the volume, in order.
    public static func sequential(volumeBytes: UInt64, blockBytes: Int) -> IOPattern {
        let count = Int(volumeBytes / UInt64(blockBytes))
        return IOPattern(name: "seq \(label(blockBytes))", blockBytes: blockBytes,
                         offsets: (0..<count).map { UInt64($0) * UInt64(blockBytes) })
    }

    /// `count` distinct blocks in a seeded random order.
    public static func random(volumeBytes: UInt64, blockBytes: Int, count: Int, seed: UInt64) -> IOPattern {
        let blocks = Int(volumeBytes / UInt64(blockBytes))
        var generator = SplitMix64(seed: seed)
        var chosen: [Int]
        if count * 4 < blocks {
            // Sparse: draw until `count` distinct blocks (no array of every block).
            var seen = Set<Int>()
            chosen = []
            while chosen.count < count {
                let block = Int(generator.next() % UInt64(blocks))
                if seen.insert(block).inserted { chosen.append(block) }
            }
        } else {
            var all = Array(0..<blocks)
            all.shuffle(using: &generator)
            chosen = Array(all.prefix(min(count, blocks)))
        }
        return IOPattern(name: "rand \(label(blockBytes))", blockBytes: blockBytes,
                         offsets: chosen.map { UInt64($0) * UInt64(blockBytes) })
    }

    /// The same blocks in another order (reads that do not replay the write order).
    public func reordered(seed: UInt64) -> IOPattern {
        var generator = SplitMix64(seed: seed)
        return IOPattern(name: name, blockBytes: blockBytes, offsets: offsets.shuffled(using: &generator))
    }

    static func label(_ bytes: Int) -> String { bytes >= 1 << 20 ? "\(bytes >> 20)M" : "\(bytes >> 10)K" }
}

/// A small, fast, seedable generator (SplitMix64), so patterns repeat across runs and machines.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= ChunkHash.increment
        return ChunkHash.mix(state)
    }
}
