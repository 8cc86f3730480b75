import BlockDevices
import ExceptionMachinery
import Testing
import TestSupport
import VolumeTargets

/// Discards and zeroing on an origin in a sparse file: what no snapshot shares becomes a hole,
/// what a snapshot still shares keeps its data, and no snapshot ever changes.
@Suite struct DiscardTests {
    static let mib = 1 << 20

    /// An origin of 4 MiB of 0x41 with two snapshots (4K and 64K chunks), then 0x42 written
    /// over `changed`: both snapshots hold those chunks, and nothing else.
    private func originWithTwoSnapshots(_ dir: TemporaryDirectory, changed: Range<Int>) async throws -> (Origin, [Snapshot]) {
        let device = try FileBlockDevice.create(path: dir.file("origin.img"), size: UInt64(4 * Self.mib))
        let origin = Origin(name: "origin", device: device, writeBack: true)
        try await origin.writeBytes(pattern(0x41, 4 * Self.mib), at: 0)
        let snapshots = [try await origin.snapshot("small", chunkBytes: 4096), try await origin.snapshot("large", chunkBytes: 65536)]
        try await origin.writeBytes(pattern(0x42, changed.count), at: UInt64(changed.lowerBound))
        try await origin.flush()
        return (origin, snapshots)
    }

    @Test func discardFreesOnlyWhatEverySnapshotHolds() async throws {
        let dir = try TemporaryDirectory()
        // Changed: 1 MiB + 4 KiB, so the 64K-chunk snapshot holds 1 MiB + 64 KiB and the 4K one
        // 1 MiB + 4 KiB: only the chunks both hold may go.
        let changed = Self.mib..<2 * Self.mib + 4096
        let (origin, snapshots) = try await originWithTwoSnapshots(dir, changed: changed)
        let freed = try await origin.discard(offset: 0, length: UInt64(4 * Self.mib))
        try await origin.flush()
        #expect(freed == UInt64(changed.count))
        #expect(try origin.device.dataExtents(in: 0..<UInt64(4 * Self.mib)) == [0..<UInt64(Self.mib), UInt64(changed.upperBound)..<UInt64(4 * Self.mib)])
        let image = try await origin.readBytes(at: 0, count: 4 * Self.mib)
        #expect(image == pattern(0x41, Self.mib) + pattern(0, changed.count) + pattern(0x41, 4 * Self.mib - changed.upperBound))
        for snapshot in snapshots { #expect(try await snapshot.image() == pattern(0x41, 4 * Self.mib), "\(snapshot.name)") }
    }

    @Test func discardWithoutSnapshotsFreesEverythingAndSnapshotsFreeNothing() async throws {
        let dir = try TemporaryDirectory()
        let (origin, snapshots) = try await originWithTwoSnapshots(dir, changed: 0..<4096)
        #expect(try await snapshots[0].discard(offset: 0, length: 8192) == 0)
        #expect(try await snapshots[0].readBytes(at: 0, count: 8192) == pattern(0x41, 8192))
        for snapshot in snapshots { await origin.detach(snapshot) }
        // Ragged at both ends: a file frees any byte range (partial blocks are zeroed).
        #expect(try await origin.discard(offset: 1000, length: UInt64(3 * Self.mib)) == UInt64(3 * Self.mib))
        #expect(try await origin.readBytes(at: 999, count: 2) == [0x42, 0])
        #expect(try await origin.readBytes(at: UInt64(1000 + 3 * Self.mib - 1), count: 2) == [0, 0x41])
        await #expect(throws: VolumeError.self) { try await origin.discard(offset: UInt64(4 * Self.mib - 1), length: 2) }
    }

    /// Zeroing reads as zeros everywhere; deallocating where `discard` would, writing (and so
    /// copying into the snapshots) elsewhere, never deallocating when told not to.
    @Test(arguments: [false, true])
    func writeZeroesZeroesAndDeallocatesOnlyWhereAllowed(mayDeallocate: Bool) async throws {
        let dir = try TemporaryDirectory()
        let changed = Self.mib..<2 * Self.mib
        let (origin, snapshots) = try await originWithTwoSnapshots(dir, changed: changed)
        let freed = try await origin.writeZeroes(offset: UInt64(Self.mib / 2), length: UInt64(2 * Self.mib), mayDeallocate: mayDeallocate)
        try await origin.flush()
        #expect(freed == (mayDeallocate ? UInt64(changed.count) : 0))
        let image = try await origin.readBytes(at: 0, count: 4 * Self.mib)
        #expect(image == pattern(0x41, Self.mib / 2) + pattern(0, 2 * Self.mib) + pattern(0x41, 3 * Self.mib / 2))
        let holes = try origin.device.dataExtents(in: 0..<UInt64(4 * Self.mib))
        #expect(holes == (mayDeallocate ? [0..<UInt64(Self.mib), UInt64(changed.upperBound)..<UInt64(4 * Self.mib)] : [0..<UInt64(4 * Self.mib)]))
        for snapshot in snapshots {
            #expect(try await snapshot.image() == pattern(0x41, 4 * Self.mib), "\(snapshot.name)")
            // The shared half MiB on each side of the changed range was copied before zeroing.
            #expect(snapshot.status.exceptions * snapshot.status.chunkBytes == 2 * Self.mib, "\(snapshot.name)")
        }
    }
}
