import BlockDevices
import ExceptionMachinery
import Synchronization
import Testing
import TestSupport
@testable import VolumeTargets

/// Snapshots of several origins joined at one instant (`Origin.attach(together:)`): a
/// consistent group, as a VM with several disks needs.
@Suite struct SnapshotGroupTests {
    private static let block = 4096
    private static let blocksPerWriter = 8

    /// Writers each write an increasing number to a random block of origin A and then, once
    /// acknowledged, to the same block of origin B, while a group snapshot of A and B is taken
    /// at a random moment. In the snapshots, B's newest number per writer is A's or the one
    /// before: never newer (B's write was sent after A's was acknowledged), never two behind.
    @Test func aGroupHoldsEveryWriteAcknowledgedBeforeOneItHolds() async throws {
        let seed = SeededGenerator.fromEnvironment().seed
        try await withDeadline(240, "group snapshots under dependent writes, seed \(seed)") {
            var generator = SeededGenerator(seed: seed)
            var midStream = 0
            for round in 0..<40 {
                let delay = Int.random(in: 0..<3000, using: &generator)
                midStream += try await Self.round(seed: seed &+ UInt64(round), writeBack: round % 2 == 1, delayMicroseconds: delay)
            }
            #expect(midStream > 0, "some group snapshot must fall between two writes; seed \(seed)")
        }
    }

    /// One round; returns how many writers the snapshots caught mid-stream.
    private static func round(seed: UInt64, writeBack: Bool, delayMicroseconds: Int) async throws -> Int {
        let writers = 3
        let size = writers * blocksPerWriter * block
        let origins = [Origin(name: "a", device: MemoryBlockDevice(name: "a", size: size), writeBack: writeBack),
                       Origin(name: "b", device: MemoryBlockDevice(name: "b", size: size), writeBack: writeBack)]
        var attachments: [SnapshotAttachment] = []
        for origin in origins {
            attachments.append(SnapshotAttachment(origin: origin, name: "\(origin.name)-snap", store: try await store(for: origin)))
        }
        let progress = WriterProgress(writers: writers)
        // Child tasks: they run on the deadline's dedicated executor, as the round does.
        let snapshots = try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<writers {
                group.addTask {
                    var generator = SeededGenerator(seed: seed &* 31 &+ UInt64(writer))
                    var number = 0
                    while !progress.stop.load(ordering: .relaxed) {
                        number += 1
                        let block = writer * blocksPerWriter + Int.random(in: 0..<blocksPerWriter, using: &generator)
                        for origin in origins { try await origin.writeBytes(Self.numbered(number), at: UInt64(block * Self.block)) }
                        progress.written.withLock { $0[writer] = number }
                        await Task.yield()
                    }
                }
            }
            while !progress.written.withLock({ $0.allSatisfy { $0 > 0 } }) { try await Task.sleep(for: .milliseconds(1)) }
            try await Task.sleep(for: .microseconds(delayMicroseconds))
            let snapshots = try await Origin.attach(together: attachments)
            progress.stop.store(true, ordering: .relaxed)
            try await group.waitForAll()
            return snapshots
        }
        var caught = 0
        for writer in 0..<writers {
            let a = try await newest(in: snapshots[0], writer: writer)
            let b = try await newest(in: snapshots[1], writer: writer)
            #expect(b == a || b == a - 1, "writer \(writer): A's snapshot holds \(a), B's \(b); seed \(seed)")
            if a > 0 && a < progress.written.withLock({ $0[writer] }) { caught += 1 }
        }
        return caught
    }

    /// Every origin of the group stays closed until the last one has drained: with a write to
    /// B held on its device, a write to A sent meanwhile waits, lands after the joins, and is
    /// not in A's snapshot; the held write to B is in B's.
    @Test func everyOriginStaysClosedUntilTheLastHasDrained() async throws {
        let a = Origin(name: "a", device: MemoryBlockDevice(name: "a", size: 64 << 10))
        let bDevice = FaultInjectingDevice(wrapping: MemoryBlockDevice(name: "b", size: 64 << 10))
        let b = Origin(name: "b", device: bDevice)
        let attachments = [SnapshotAttachment(origin: a, name: "a-snap", store: try await Self.store(for: a)),
                           SnapshotAttachment(origin: b, name: "b-snap", store: try await Self.store(for: b))]
        try await withDeadline(120, "a group waits for a held write") {
            let held = bDevice.hold(.write)
            let heldWrite = Task(executorPreference: DedicatedExecutor.shared) { try await b.writeBytes(pattern(0xBB, 4096), at: 0) }
            await held.arrived.wait()
            let group = Task(executorPreference: DedicatedExecutor.shared) { try await Origin.attach(together: attachments) }
            while !b.isGateClosed { try await Task.sleep(for: .milliseconds(1)) }
            let progress = WriterProgress(writers: 1)
            let lateWrite = Task(executorPreference: DedicatedExecutor.shared) {
                try await a.writeBytes(pattern(0xAA, 4096), at: 0)
                progress.stop.store(true, ordering: .relaxed)
            }
            try await Task.sleep(for: .milliseconds(100))
            let landed = progress.stop.load(ordering: .relaxed)
            #expect(!landed, "A reopened while B was still draining")
            held.release()
            let snapshots = try await group.value
            try await heldWrite.value
            try await lateWrite.value
            #expect(try await snapshots[0].readBytes(at: 0, count: 4096) == pattern(0, 4096))
            #expect(try await a.readBytes(at: 0, count: 4096) == pattern(0xAA, 4096))
            #expect(try await snapshots[1].readBytes(at: 0, count: 4096) == pattern(0xBB, 4096))
        }
    }

    /// Several snapshots of one origin join together (its gate closes once) and each keeps the
    /// origin as it was.
    @Test func severalSnapshotsOfOneOriginJoinTogether() async throws {
        let device = patternedDevice(size: 64 << 10)
        let before = device.contents
        let origin = Origin(name: "origin", device: device)
        let other = Origin(name: "other", device: patternedDevice("other", size: 64 << 10))
        try await withDeadline(60, "two snapshots of one origin and one of another join") {
            let snapshots = try await Origin.attach(together: [
                SnapshotAttachment(origin: origin, name: "s1", store: try await Self.store(for: origin)),
                SnapshotAttachment(origin: other, name: "s2", store: try await Self.store(for: other)),
                SnapshotAttachment(origin: origin, name: "s3", store: try await Self.store(for: origin)),
            ])
            try await origin.writeBytes(pattern(0xEE, 64 << 10), at: 0)
            #expect(try await snapshots[0].image() == before)
            #expect(try await snapshots[2].image() == before)
            #expect(origin.snapshots.map(\.name) == ["s1", "s3"])
            #expect(other.snapshots.map(\.name) == ["s2"])
        }
    }

    /// When one store's metadata cannot be read, no snapshot of the group joins.
    @Test func nothingJoinsWhenOneLoadFails() async throws {
        let first = Origin(name: "first", device: patternedDevice(size: 64 << 10))
        let second = Origin(name: "second", device: patternedDevice("second", size: 64 << 10))
        let failing = FaultInjectingDevice(wrapping: MemoryBlockDevice(name: "cow", size: 256 << 10))
        let geometry = try ChunkGeometry(chunkBytes: 4096)
        let broken = try await PersistentExceptionStore.format(failing, geometry: geometry)
        failing.fail(.read)
        await #expect(throws: (any Error).self) {
            _ = try await Origin.attach(together: [
                SnapshotAttachment(origin: first, name: "fine", store: try await Self.store(for: first)),
                SnapshotAttachment(origin: second, name: "broken", store: broken),
            ])
        }
        #expect(first.snapshots.isEmpty && second.snapshots.isEmpty)
    }

    private static func store(for origin: Origin) async throws -> PersistentExceptionStore {
        let geometry = try ChunkGeometry(chunkBytes: block)
        let chunks = CowLayout(geometry: geometry).chunksToHoldWholeOrigin(geometry.chunksCovering(origin.size))
        return try await PersistentExceptionStore.format(MemoryBlockDevice(name: "cow", size: Int(chunks) * block), geometry: geometry)
    }

    private static func numbered(_ number: Int) -> [UInt8] {
        withUnsafeBytes(of: UInt64(number).littleEndian) { Array($0) } + [UInt8](repeating: 0, count: block - 8)
    }

    /// The newest number `writer` wrote that `snapshot` holds (0: none).
    private static func newest(in snapshot: Snapshot, writer: Int) async throws -> Int {
        var newest = 0
        for index in 0..<blocksPerWriter {
            let bytes = try await snapshot.readBytes(at: UInt64((writer * blocksPerWriter + index) * block), count: 8)
            newest = max(newest, Int(bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }))
        }
        return newest
    }
}

/// What the writers of one round share with it: when to stop, and the last number each wrote.
private final class WriterProgress: Sendable {
    let stop = Atomic<Bool>(false)
    let written: Mutex<[Int]>

    init(writers: Int) { written = Mutex([Int](repeating: 0, count: writers)) }
}
