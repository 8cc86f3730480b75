import AsyncPrimitives
import BlockDevices
import ExceptionMachinery
import Testing
import TestSupport
import Synchronization
import VolumeTargets

/// Full COW stores, failed copies and failed metadata writes: the snapshot dies, durably and
/// loudly; the origin and the other snapshots carry on.
@Suite struct FailureTests {
    @Test func fullCowInvalidatesOnlyThatSnapshot() async throws {
        let device = patternedDevice(size: 256 << 10)
        let before = device.contents
        let events = EventLog()
        let origin = Origin(name: "origin", device: device, onEvent: events.append)
        let smallCow = MemoryBlockDevice(name: "small-cow", size: 8 * 4096)
        let small = try await origin.snapshot("small", cow: smallCow)
        let big = try await origin.snapshot("big")
        try await origin.writeBytes(pattern(6, 100 << 10), at: 0)
        #expect(small.status.condition == .invalid(reason: "COW store full"))
        #expect(small.status.dmStatusLine == "0 512 snapshot Invalid")
        #expect(CowHeader(decoding: smallCow.contents).valid == 0)
        #expect(try await CowScanner.scan(smallCow).state == .invalid)
        await #expect(throws: VolumeError.invalid(volume: "small", reason: "COW store full")) {
            _ = try await small.readBytes(at: 0, count: 512)
        }
        #expect(try await big.image() == before)
        #expect(try await origin.readBytes(at: 0, count: 100 << 10) == pattern(6, 100 << 10))
        try await origin.writeBytes(pattern(7, 4096), at: 200 << 10)
        #expect(events.all.filter { if case .snapshotInvalidated = $0 { true } else { false } }.count == 1)
    }

    @Test func failedCopyInvalidatesAndTheOriginWriteProceeds() async throws {
        let device = patternedDevice(size: 64 << 10)
        let cow = FaultInjectingDevice(wrapping: MemoryBlockDevice(name: "cow", size: 256 << 10))
        let origin = Origin(name: "origin", device: device)
        let snapshot = try await origin.snapshot("snap", cow: cow)
        cow.fail(.write, in: 2 * 4096..<3 * 4096)
        try await origin.writeBytes(pattern(1, 4096), at: 0)
        guard case .invalid = snapshot.status.condition else { Issue.record("snapshot should be invalid"); return }
        cow.clearFaults()
        #expect(try await CowScanner.scan(cow.base).state == .invalid)
        #expect(try await origin.readBytes(at: 0, count: 4096) == pattern(1, 4096))
    }

    @Test func failedOriginReadDuringCopyInvalidates() async throws {
        let device = FaultInjectingDevice(wrapping: patternedDevice(size: 64 << 10))
        let origin = Origin(name: "origin", device: device)
        let snapshot = try await origin.snapshot("snap")
        device.fail(.read, in: 0..<4096)
        try await origin.writeBytes(pattern(1, 4096), at: 0)
        guard case .invalid = snapshot.status.condition else { Issue.record("snapshot should be invalid"); return }
    }

    @Test func failedMetadataWriteInvalidates() async throws {
        let device = patternedDevice(size: 64 << 10)
        let cow = FaultInjectingDevice(wrapping: MemoryBlockDevice(name: "cow", size: 256 << 10))
        let origin = Origin(name: "origin", device: device)
        let snapshot = try await origin.snapshot("snap", cow: cow)
        cow.fail(.write, in: 4096..<8192)   // metadata area 0
        try await origin.writeBytes(pattern(1, 4096), at: 0)
        guard case .invalid = snapshot.status.condition else { Issue.record("snapshot should be invalid"); return }
        await #expect(throws: VolumeError.self) { _ = try await snapshot.readBytes(at: 0, count: 1) }
    }

    @Test func snapshotWriteIntoAFullStoreOverflowsButStaysReadable() async throws {
        let device = patternedDevice(size: 64 << 10)
        let before = device.contents
        let origin = Origin(name: "origin", device: device)
        let snapshot = try await origin.snapshot("snap", cowBytes: 3 * 4096)
        try await snapshot.writeBytes(pattern(1, 4096), at: 0)
        await #expect(throws: VolumeError.overflow(volume: "snap")) { try await snapshot.writeBytes(pattern(2, 4096), at: 8192) }
        #expect(snapshot.status.condition == .overflow)
        #expect(snapshot.status.dmStatusLine.hasSuffix("Overflow"))
        #expect(try await snapshot.readBytes(at: 0, count: 4096) == pattern(1, 4096))
        #expect(try await snapshot.readBytes(at: 8192, count: 4096) == Array(before[8192..<12288]))
    }
}

/// Collects engine events for assertions.
final class EventLog: Sendable {
    private let events = Mutex<[VolumeEvent]>([])
    var all: [VolumeEvent] { events.withLock { $0 } }
    @Sendable func append(_ event: VolumeEvent) { events.withLock { $0.append(event) } }
}

/// A COW device that disappears under load (as a detached loop device): the snapshot dies with a
/// clear reason, every origin write still completes, nothing hangs.
@Suite struct DisappearingDeviceTests {
    @Test func cowVanishesUnderLoad() async throws {
        var generator = SeededGenerator.fromEnvironment()
        let device = patternedDevice(size: 1 << 20)
        let cow = FaultInjectingDevice(wrapping: MemoryBlockDevice(name: "cow", size: 2 << 20))
        let events = EventLog()
        let origin = Origin(name: "origin", device: device, onEvent: events.append)
        let snapshot = try await origin.snapshot("snap", cow: cow)
        let vanishAt = Int.random(in: 1...40, using: &generator)
        let vanished = OneShotEvent<Void>()
        // Writer 0 pulls the device out after `vanishAt` writes; the others write half of their
        // chunks before and half after, so copies are in flight when it goes.
        try await withDeadline(120, "writes after the COW vanished; seed \(generator.seed)") {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for writer in 0..<4 {
                    group.addTask {
                        for i in 0..<50 {
                            if writer > 0 && i == 25 { await vanished.wait() }
                            let offset = UInt64((writer * 50 + i) * 4096)
                            try await origin.writeBytes(pattern(UInt8(writer + 1), 4096), at: offset)
                            if writer == 0 && i == vanishAt {
                                cow.disappear()
                                vanished.signal()
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        guard case .invalid(let reason) = snapshot.status.condition else {
            Issue.record("the snapshot should be invalid; seed \(generator.seed)")
            return
        }
        #expect(reason.contains("cow") || reason.contains("copy") || reason.contains("metadata"), "reason: \(reason)")
        await #expect(throws: VolumeError.self) { _ = try await snapshot.readBytes(at: 0, count: 1) }
        #expect(events.all.contains { if case .snapshotInvalidated = $0 { true } else { false } })
        #expect(try await origin.readBytes(at: 0, count: 4096) == pattern(1, 4096))
    }
}
