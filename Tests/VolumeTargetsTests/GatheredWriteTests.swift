import BlockDevices
import Testing
import TestSupport
import VolumeTargets

/// `write(gathering:at:)` (a payload written as the pieces it arrived in) against a reference:
/// the same writes made contiguous on an identical origin. Every path of an origin write is
/// taken: queued first writes, direct rewrites, write-through (write-back off), writes larger
/// than the queue takes; and a snapshot, which gathers by default.
@Suite struct GatheredWriteTests {
    /// `bytes` cut at random places into 1 to 6 pieces (some of them empty).
    private func pieces(of bytes: [UInt8], using generator: inout SeededGenerator) -> [[UInt8]] {
        var cuts = (0..<Int.random(in: 0...5, using: &generator)).map { _ in Int.random(in: 0...bytes.count, using: &generator) }
        cuts = ([0] + cuts.sorted() + [bytes.count])
        return zip(cuts, cuts.dropFirst()).map { Array(bytes[$0..<$1]) }
    }

    private func gatheredWrite(_ volume: any Volume, _ pieces: [[UInt8]], at offset: UInt64) async throws {
        let buffers = pieces.map { AlignedBuffer(copying: $0) }
        try await volume.write(gathering: buffers.map(\.bytes), at: offset)
        withExtendedLifetime(buffers) {}
    }

    @Test(arguments: [true, false]) func gatheredWritesMatchContiguousOnes(writeBack: Bool) async throws {
        var generator = SeededGenerator.fromEnvironment()
        let seed = generator.seed
        let size = 4 << 20
        let tested = Origin(name: "tested", device: patternedDevice(size: size), writeBack: writeBack)
        let reference = Origin(name: "reference", device: patternedDevice(size: size), writeBack: writeBack)
        let testedSnapshot = try await tested.snapshot("t", chunkBytes: 16384)
        let referenceSnapshot = try await reference.snapshot("r", chunkBytes: 16384)
        for step in 0..<60 {
            // Mostly under 1 MiB (queued when write-back is on), sometimes over it (not queued);
            // repeated offsets make rewrites of chunks already copied (direct).
            let length = step % 10 == 9 ? Int.random(in: (1 << 20) + 1...(2 << 20), using: &generator)
                                        : Int.random(in: 1...(256 << 10), using: &generator)
            let offset = UInt64.random(in: 0...UInt64(size - length), using: &generator) / 512 * 512
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let cut = pieces(of: bytes, using: &generator)
            let (testedVolume, referenceVolume): (any Volume, any Volume) =
                step % 4 == 3 ? (testedSnapshot, referenceSnapshot) : (tested, reference)
            try await gatheredWrite(testedVolume, cut, at: offset)
            try await referenceVolume.writeBytes(bytes, at: offset)
        }
        try await tested.flush()
        try await reference.flush()
        #expect(try await tested.readBytes(at: 0, count: size) == reference.readBytes(at: 0, count: size), "origin differs, seed \(seed)")
        #expect(try await testedSnapshot.image() == referenceSnapshot.image(), "snapshot differs, seed \(seed)")
    }
}
