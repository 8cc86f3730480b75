import AsyncPrimitives
import BlockDevices
import ExceptionMachinery
import Testing
import TestSupport
import VolumeTargets

/// Write-back origin writes: acknowledged once queued, yet ordered and durable as promised.
@Suite struct WriteBackTests {
    /// A write that needs a copy returns before the copy ends; the origin is untouched until
    /// the copy commits, a read of the range waits and sees the new data, and the snapshot
    /// keeps the old data.
    @Test func queuedWriteIsAcknowledgedEarlyButLandsAfterItsCopy() async throws {
        let device = patternedDevice(size: 64 << 10)
        let before = device.contents
        let origin = Origin(name: "origin", device: device, writeBack: true)
        let cow = FaultInjectingDevice(wrapping: MemoryBlockDevice(name: "cow", size: 256 << 10))
        let snapshot = try await origin.snapshot("snap", cow: cow)
        let copyHeld = cow.hold(.write, in: 2 * 4096..<3 * 4096)
        try await withDeadline(10, "a queued write is acknowledged while its copy is held") {
            try await origin.writeBytes(pattern(0xAA, 4096), at: 0)
        }
        await copyHeld.arrived.wait()
        #expect(Array(device.contents[0..<4096]) == Array(before[0..<4096]), "the origin changes only after the copy")
        let reader = Task { try await origin.readBytes(at: 0, count: 4096) }
        for _ in 0..<50 { await Task.yield() }
        copyHeld.release()
        #expect(try await reader.value == pattern(0xAA, 4096), "a read after the acknowledgement sees the write")
        #expect(try await snapshot.readBytes(at: 0, count: 4096) == Array(before[0..<4096]))
    }

    /// Status sees the queue: a write held behind its copy counts until it lands.
    @Test func queuedWritesAreCountedUntilTheyLand() async throws {
        let device = patternedDevice(size: 64 << 10)
        let origin = Origin(name: "origin", device: device, writeBack: true)
        let cow = FaultInjectingDevice(wrapping: MemoryBlockDevice(name: "cow", size: 256 << 10))
        _ = try await origin.snapshot("snap", cow: cow)
        #expect(origin.queuedWrites == QueuedWrites())
        let copyHeld = cow.hold(.write, in: 2 * 4096..<3 * 4096)
        try await origin.writeBytes(pattern(0xAA, 6000), at: 1000)
        await copyHeld.arrived.wait()
        #expect(origin.queuedWrites == QueuedWrites(writes: 1, bytes: 6000))
        copyHeld.release()
        try await origin.flush()
        #expect(origin.queuedWrites == QueuedWrites())
    }

    /// The queue is bounded by count for small writes (256) and by bytes for large ones
    /// (32 MiB): with every commit held behind the first copy, that many writes are
    /// acknowledged, the next one waits, and all of them land once the copy goes on.
    @Test(arguments: [(4096, 256), (1 << 20, 32)])
    func queueIsBoundedByCountAndBytes(writeBytes: Int, queued: Int) async throws {
        let device = MemoryBlockDevice(size: (queued + 2) * writeBytes)
        let origin = Origin(name: "origin", device: device, writeBack: true)
        let cow = FaultInjectingDevice(wrapping: MemoryBlockDevice(name: "cow", size: (queued + 2) * writeBytes * 2))
        _ = try await origin.snapshot("snap", cow: cow)
        // Records commit in allocation order: nothing commits while the first copy is held.
        let firstCopy = cow.hold(.write, in: 2 * 4096..<3 * 4096)
        try await withDeadline(30, "\(queued) writes of \(writeBytes) bytes are acknowledged") {
            for index in 0..<queued {
                try await origin.writeBytes(pattern(0xC3, writeBytes), at: UInt64(index * writeBytes))
            }
        }
        let next = OneShotEvent<Void>()
        let writer = Task {
            try await origin.writeBytes(pattern(0xC4, writeBytes), at: UInt64(queued * writeBytes))
            next.signal()
        }
        await dispatchPause(for: .milliseconds(200))
        #expect(origin.queuedWrites.writes == queued)
        #expect(!next.isSignalled, "write \(queued + 1) must wait for room in the queue")
        firstCopy.release()
        try await writer.value
        try await origin.flush()
        #expect(origin.queuedWrites == QueuedWrites())
        let contents = device.contents
        #expect(contents[0..<queued * writeBytes].allSatisfy { $0 == 0xC3 })
        #expect(contents[queued * writeBytes..<(queued + 1) * writeBytes].allSatisfy { $0 == 0xC4 })
    }

    /// Overlapping writes reach the device in the order they were acknowledged, whatever order
    /// their copies finish in.
    @Test func overlappingQueuedWritesLandInOrder() async throws {
        let device = patternedDevice(size: 64 << 10)
        let origin = Origin(name: "origin", device: device, writeBack: true)
        let cow = FaultInjectingDevice(wrapping: MemoryBlockDevice(name: "cow", size: 256 << 10))
        _ = try await origin.snapshot("snap", cow: cow)
        let firstCopy = cow.hold(.write, in: 2 * 4096..<3 * 4096)        // chunk 0's copy
        try await origin.writeBytes(pattern(1, 8192), at: 0)              // chunks 0 and 1
        await firstCopy.arrived.wait()
        try await origin.writeBytes(pattern(2, 4096), at: 4096)           // chunk 1 again, queued behind
        for _ in 0..<50 { await Task.yield() }
        firstCopy.release()
        try await origin.flush()
        #expect(Array(device.contents[0..<4096]) == pattern(1, 4096))
        #expect(Array(device.contents[4096..<8192]) == pattern(2, 4096), "the later write must win")
    }

    /// A write too large to queue still lands after an acknowledged queued write it overlaps,
    /// even when the queued one is stuck at the device after its copy.
    @Test func largeWriteLandsAfterAnOverlappingQueuedWrite() async throws {
        let device = FaultInjectingDevice(wrapping: patternedDevice(size: 4 << 20))
        let origin = Origin(name: "origin", device: device, writeBack: true)
        _ = try await origin.snapshot("snap")
        let landing = device.hold(.write, in: 0..<4096)                    // the queued write's device write
        try await origin.writeBytes(pattern(1, 4096), at: 0)
        await landing.arrived.wait()
        let largeDone = OneShotEvent<Void>()
        let large = Task {
            defer { largeDone.signal() }
            try await origin.writeBytes(pattern(2, 2 << 20), at: 0)
        }
        // Give the large write every chance to overtake (it must not): up to 2 s.
        for _ in 0..<200 where !largeDone.isSignalled { try await Task.sleep(for: .milliseconds(10)) }
        landing.release()
        try await large.value
        try await origin.flush()
        let base = device.base as! MemoryBlockDevice
        #expect(sameBytes(Array(base.contents[0..<4096]), pattern(2, 4096)), "the later, larger write must win")
    }

    /// A queued write whose device write fails is reported by the next flush, once.
    @Test func flushReportsAFailedQueuedWrite() async throws {
        let device = FaultInjectingDevice(wrapping: patternedDevice(size: 64 << 10))
        let origin = Origin(name: "origin", device: device, writeBack: true)
        _ = try await origin.snapshot("snap")
        device.fail(.write, in: 0..<4096)
        try await origin.writeBytes(pattern(3, 4096), at: 0)
        await #expect(throws: (any Error).self) { try await origin.flush() }
        device.clearFaults()
        try await origin.flush()
    }

    /// Randomized: concurrent writers and readers on a write-back origin with slow COW writes;
    /// after a flush, the origin equals the last write per block and the snapshot the start.
    @Test func concurrentWritersEndInTheLastWrittenState() async throws {
        var generator = SeededGenerator.fromEnvironment()
        let device = patternedDevice(size: 256 << 10)
        let before = device.contents
        let origin = Origin(name: "origin", device: device, writeBack: true)
        let cow = FaultInjectingDevice(wrapping: MemoryBlockDevice(name: "cow", size: 1 << 20))
        cow.delay(.write, by: .microseconds(200))
        let snapshot = try await origin.snapshot("snap", cow: cow)
        var expected = before
        let blocks = 64
        for round in 0..<20 {
            // Each round: distinct blocks written concurrently, then a reader checks them.
            var chosen = Array(0..<blocks)
            chosen.shuffle(using: &generator)
            let picks = chosen.prefix(8).map { ($0, UInt8(truncatingIfNeeded: round * 8 + $0 + 1)) }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (block, value) in picks {
                    group.addTask { try await origin.writeBytes(pattern(value, 4096), at: UInt64(block) * 4096) }
                }
                try await group.waitForAll()
            }
            for (block, value) in picks { expected.replaceSubrange(block * 4096..<(block + 1) * 4096, with: pattern(value, 4096)) }
            let image = try await origin.readBytes(at: 0, count: blocks * 4096)
            #expect(sameBytes(image, Array(expected[0..<blocks * 4096])), "round \(round), seed \(generator.seed)")
        }
        try await origin.flush()
        #expect(sameBytes(device.contents, expected), "seed \(generator.seed)")
        #expect(sameBytes(try await snapshot.image(), before), "seed \(generator.seed)")
    }
}
