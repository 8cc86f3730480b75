import BlockDevices
import ExceptionMachinery
import Testing
import TestSupport
import VolumeTargets

@Suite struct OriginSnapshotTests {
    @Test(arguments: [4096, 16384, 65536])
    func snapshotKeepsTheOldContentsAndOriginTheNew(_ chunkBytes: Int) async throws {
        let device = patternedDevice(size: 1 << 20)
        let before = device.contents
        let origin = Origin(name: "origin", device: device)
        let snapshot = try await origin.snapshot("snap", chunkBytes: chunkBytes)
        try await origin.writeBytes(pattern(0xEE, 10_000), at: 70_000)
        #expect(try await snapshot.image() == before)
        var expected = before
        expected.replaceSubrange(70_000..<80_000, with: pattern(0xEE, 10_000))
        #expect(try await origin.readBytes(at: 0, count: 1 << 20) == expected)
        let chunks = Int(((70_000 + 10_000 - 1) / chunkBytes) - (70_000 / chunkBytes) + 1)
        #expect(snapshot.status.exceptions == chunks)
        #expect(snapshot.status.pendingExceptions == 0)
    }

    @Test func snapshotWritesDoNotTouchTheOrigin() async throws {
        let device = patternedDevice(size: 256 << 10)
        let before = device.contents
        let origin = Origin(name: "origin", device: device)
        let snapshot = try await origin.snapshot("snap")
        try await snapshot.writeBytes(pattern(1, 100), at: 5000)
        try await snapshot.writeBytes(pattern(2, 8192), at: 8192)
        #expect(device.contents == before)
        var expected = before
        expected.replaceSubrange(5000..<5100, with: pattern(1, 100))
        expected.replaceSubrange(8192..<16384, with: pattern(2, 8192))
        #expect(try await snapshot.image() == expected)
    }

    /// Beyond the kernel: one origin read feeds the copies into all snapshots that need the chunk.
    @Test func oneOriginReadFeedsEightSnapshots() async throws {
        let device = FaultInjectingDevice(wrapping: patternedDevice(size: 256 << 10))
        let origin = Origin(name: "origin", device: device)
        var snapshots: [Snapshot] = []
        for i in 0..<8 { snapshots.append(try await origin.snapshot("s\(i)", chunkBytes: 16384)) }
        let readsBefore = device.counters.reads
        try await origin.writeBytes(pattern(9, 4096), at: 32768)
        #expect(device.counters.reads - readsBefore == 1)
        for snapshot in snapshots { #expect(snapshot.status.exceptions == 1) }
    }

    /// A retired origin (removed from its pool) refuses its own I/O, and its device keeps what
    /// it held; I/O in flight when it retires finishes first.
    @Test func aRetiredOriginRefusesItsIO() async throws {
        let device = MemoryBlockDevice(name: "origin", size: 1 << 20)
        let origin = Origin(name: "origin", device: device, writeBack: true)
        try await origin.writeBytes(pattern(0x31, 4096), at: 0)
        await origin.retire()
        let refused = VolumeError.refused(volume: "origin", reason: "origin was removed from its pool")
        await #expect(throws: refused) { try await origin.writeBytes(pattern(0x32, 4096), at: 0) }
        await #expect(throws: refused) { _ = try await origin.readBytes(at: 0, count: 4096) }
        await #expect(throws: refused) { try await origin.flush() }
        await #expect(throws: refused) { _ = try await origin.discard(offset: 0, length: 4096) }
        await #expect(throws: refused) { _ = try await origin.dataMap(offset: 0, length: 4096) }
        #expect(Array(device.contents[0..<4096]) == pattern(0x31, 4096))
    }

    /// `readImmediately` and `writeImmediately` (what the NBD server serves inline) answer the
    /// common I/O at once and refuse the rest having done nothing and holding nothing: a refused
    /// read leaves the gate open, so a detach does not wait for it.
    @Test func immediateIOAnswersTheCommonCaseAndHoldsNothingOtherwise() async throws {
        let device = patternedDevice(size: 1 << 20)
        let origin = Origin(name: "origin", device: device, writeBack: true)
        let cow = FaultInjectingDevice(wrapping: MemoryBlockDevice(name: "cow", size: 2 << 20))
        let snapshot = try await origin.snapshot("snap", cow: cow)
        let old = Array(device.contents[0..<8192])
        let data = pattern(0x5C, 4096)
        // Chunk 0 is not copied yet: no write at once, and nothing written.
        #expect(try data.withUnsafeBytes { try origin.writeImmediately($0, at: 0) } == false)
        #expect(device.contents[0..<4096].elementsEqual(old[0..<4096]))
        try await origin.writeBytes(data, at: 0)
        try await origin.flush()   // the write-back queue drained: nothing queued in the range
        // Copied now: the rewrite goes at once.
        let again = pattern(0x5D, 4096)
        #expect(try again.withUnsafeBytes { try origin.writeImmediately($0, at: 0) })
        #expect(device.contents[0..<4096].elementsEqual(again))
        var buffer = [UInt8](repeating: 0, count: 4096)
        // A chunk still on the origin: read at once, the old data.
        #expect(try buffer.withUnsafeMutableBytes { try snapshot.readImmediately(into: $0, at: 4096) })
        #expect(buffer.elementsEqual(old[4096..<8192]))
        #expect(try buffer.withUnsafeMutableBytes { try origin.readImmediately(into: $0, at: 0) })
        #expect(buffer.elementsEqual(again))
        // Chunk 0 is in a COW device that only reads by suspending; a read across two chunks
        // needs the general path: both refused.
        #expect(try buffer.withUnsafeMutableBytes { try snapshot.readImmediately(into: $0, at: 0) } == false)
        var two = [UInt8](repeating: 0, count: 8192)
        #expect(try two.withUnsafeMutableBytes { try snapshot.readImmediately(into: $0, at: 2048) } == false)
        #expect(try await snapshot.readBytes(at: 0, count: 4096).elementsEqual(old[0..<4096]))
        try await withDeadline(10, "a detach after refused immediate reads") { await origin.detach(snapshot) }
    }

    @Test func offsetsPastTheEndAreRefused() async throws {
        let origin = Origin(name: "origin", device: patternedDevice(size: 65536))
        let snapshot = try await origin.snapshot("snap")
        await #expect(throws: VolumeError.outOfRange(volume: "origin", offset: 65000, length: 1000, size: 65536)) {
            try await origin.writeBytes(pattern(1, 1000), at: 65000)
        }
        await #expect(throws: VolumeError.outOfRange(volume: "snap", offset: 65536, length: 1, size: 65536)) {
            _ = try await snapshot.readBytes(at: 65536, count: 1)
        }
    }

    @Test func snapshotsOfDifferentChunkSizesEachStayCorrect() async throws {
        let device = patternedDevice(size: 512 << 10)
        let before = device.contents
        let origin = Origin(name: "origin", device: device)
        let small = try await origin.snapshot("small", chunkBytes: 4096)
        try await origin.writeBytes(pattern(3, 3000), at: 1000)
        let afterFirst = device.contents
        let large = try await origin.snapshot("large", chunkBytes: 65536)
        try await origin.writeBytes(pattern(4, 70_000), at: 60_000)
        #expect(try await small.image() == before)
        #expect(try await large.image() == afterFirst)
    }

    @Test func reattachingFromDiskKeepsTheSnapshot() async throws {
        let device = patternedDevice(size: 256 << 10)
        let before = device.contents
        let cow = MemoryBlockDevice(name: "cow", size: 512 << 10)
        var origin = Origin(name: "origin", device: device)
        var snapshot = try await origin.snapshot("snap", cow: cow)
        try await origin.writeBytes(pattern(7, 20_000), at: 3000)
        try await snapshot.writeBytes(pattern(8, 10), at: 200_000)
        let image = try await snapshot.image()
        await origin.detach(snapshot)
        #expect(snapshot.status.condition == .inactive)
        origin = Origin(name: "origin", device: device)
        snapshot = try await origin.attach(name: "snap", store: try await PersistentExceptionStore.open(cow))
        #expect(try await snapshot.image() == image)
        #expect(Array(image[3000..<23000]) == Array(before[3000..<23000]))
    }

    @Test func transientSnapshotWorksWithoutMetadata() async throws {
        let device = patternedDevice(size: 128 << 10)
        let before = device.contents
        let origin = Origin(name: "origin", device: device)
        let store = TransientExceptionStore(device: MemoryBlockDevice(size: 256 << 10), geometry: try ChunkGeometry(chunkBytes: 4096))
        let snapshot = try await origin.attach(name: "t", store: store)
        try await origin.writeBytes(pattern(5, 50_000), at: 0)
        #expect(try await snapshot.image() == before)
        #expect(snapshot.status.usage.metadataSectors == 0)
        await #expect(throws: VolumeError.self) { try await origin.merge(snapshot) }
    }
}
