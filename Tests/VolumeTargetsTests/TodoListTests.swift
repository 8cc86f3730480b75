import BlockDevices
import ExceptionMachinery
import Testing
import TestSupport
import VolumeTargets

/// One deterministic test per item of the 2003 dm-snapshot to-do list. Each holds an I/O in
/// flight at the critical moment with the fault-injecting device, so the race is forced, not hoped for.
@Suite struct TodoListTests {
    /// Item 1: a snapshot read of a chunk whose copy is pending waits for it and returns the COW copy.
    @Test func snapshotReadOfAPendingChunkWaitsForTheCopy() async throws {
        let originDevice = FaultInjectingDevice(wrapping: patternedDevice(size: 64 << 10))
        let old = Array((originDevice.base as! MemoryBlockDevice).contents[8192..<12288])
        let cow = FaultInjectingDevice(wrapping: MemoryBlockDevice(name: "cow", size: 256 << 10))
        let origin = Origin(name: "origin", device: originDevice)
        let snapshot = try await origin.snapshot("snap", cow: cow)
        let copyHeld = cow.hold(.write, in: 2 * 4096..<3 * 4096)   // the first data chunk of the COW
        let writer = Task { try await origin.writeBytes(pattern(0xAA, 4096), at: 8192) }
        await copyHeld.arrived.wait()
        #expect(snapshot.status.pendingExceptions == 1)
        let originReads = originDevice.counters.reads
        let reader = Task { try await snapshot.readBytes(at: 8192, count: 4096) }
        for _ in 0..<50 { await Task.yield() }
        #expect(originDevice.counters.reads == originReads, "the read must wait, not go to the origin")
        let cowReads = cow.counters.reads
        copyHeld.release()
        #expect(try await reader.value == old)
        try await writer.value
        #expect(cow.counters.reads > cowReads, "the read was served from the COW copy")
        #expect(originDevice.counters.reads == originReads)
    }

    /// Item 2: a snapshot joins its origin only after its metadata is loaded.
    @Test func snapshotJoinsOnlyAfterItsMetadataIsLoaded() async throws {
        let device = patternedDevice(size: 64 << 10)
        let cowBase = MemoryBlockDevice(name: "cow", size: 256 << 10)
        let store = try await PersistentExceptionStore.format(cowBase, geometry: try ChunkGeometry(chunkBytes: 4096))
        _ = store
        let cow = FaultInjectingDevice(wrapping: cowBase)
        let origin = Origin(name: "origin", device: device)
        let loadHeld = cow.hold(.read, in: 4096..<8192)   // reading metadata area 0
        let reopened = try await PersistentExceptionStore.open(cow)
        let attaching = Task { try await origin.attach(name: "snap", store: reopened) }
        await loadHeld.arrived.wait()
        #expect(origin.snapshots.isEmpty)
        let cowWrites = cow.counters.writes
        try await withDeadline(10, "origin write while a snapshot loads") {
            try await origin.writeBytes(pattern(1, 4096), at: 0)
        }
        #expect(cow.counters.writes == cowWrites, "a loading snapshot must not receive copies")
        let afterWrite = device.contents
        loadHeld.release()
        let snapshot = try await attaching.value
        #expect(origin.snapshots.count == 1)
        try await origin.writeBytes(pattern(2, 4096), at: 0)
        #expect(try await snapshot.image() == afterWrite)
    }

    /// Item 3: with several snapshots, an origin write waits for all their pending exceptions,
    /// including one another write started, with no lock held across snapshots.
    @Test func originWriteWaitsForEverySnapshotsPendingCopy() async throws {
        let device = patternedDevice(size: 64 << 10)
        let before = device.contents
        let origin = Origin(name: "origin", device: device)
        let fast = try await origin.snapshot("fast")
        let slowCow = FaultInjectingDevice(wrapping: MemoryBlockDevice(name: "slow-cow", size: 256 << 10))
        let slow = try await origin.snapshot("slow", cow: slowCow)
        let copyHeld = slowCow.hold(.write, in: 2 * 4096..<3 * 4096)
        let first = Task { try await origin.writeBytes(pattern(1, 100), at: 0) }
        await copyHeld.arrived.wait()
        let second = Task { try await origin.writeBytes(pattern(2, 100), at: 200) }
        for _ in 0..<50 { await Task.yield() }
        #expect(Array(device.contents[0..<4096]) == Array(before[0..<4096]), "no origin write may pass a pending copy")
        #expect(fast.status.exceptions == 1)
        copyHeld.release()
        try await first.value
        try await second.value
        #expect(try await slow.readBytes(at: 0, count: 4096) == Array(before[0..<4096]))
        #expect(try await fast.readBytes(at: 0, count: 4096) == Array(before[0..<4096]))
    }

    /// Item 4: an origin write never overtakes a snapshot read that was sent to the origin.
    @Test func originWriteWaitsForASnapshotReadSentToTheOrigin() async throws {
        let originDevice = FaultInjectingDevice(wrapping: patternedDevice(size: 64 << 10))
        let old = Array((originDevice.base as! MemoryBlockDevice).contents[16384..<20480])
        let origin = Origin(name: "origin", device: originDevice)
        let snapshot = try await origin.snapshot("snap")
        let readHeld = originDevice.hold(.read, in: 16384..<20480)
        let reader = Task { try await snapshot.readBytes(at: 16384, count: 4096) }
        await readHeld.arrived.wait()
        let writes = originDevice.counters.writes
        let writer = Task { try await origin.writeBytes(pattern(0xBB, 4096), at: 16384) }
        await eventually("the copy is committed") { snapshot.status.exceptions == 1 }
        for _ in 0..<50 { await Task.yield() }
        #expect(originDevice.counters.writes == writes, "the origin write must wait for the in-flight snapshot read")
        readHeld.release()
        #expect(try await reader.value == old)
        try await writer.value
        #expect(originDevice.counters.writes == writes + 1)
        #expect(try await snapshot.readBytes(at: 16384, count: 4096) == old)
    }

    /// Item 4 is tracked by bytes, not chunks: a write to another part of the chunk a held
    /// snapshot read covers is not delayed by it, and the read still returns the old data.
    @Test func originWriteBesideAHeldSnapshotReadIsNotDelayed() async throws {
        let originDevice = FaultInjectingDevice(wrapping: patternedDevice(size: 64 << 10))
        let before = (originDevice.base as! MemoryBlockDevice).contents
        let origin = Origin(name: "origin", device: originDevice)
        let snapshot = try await origin.snapshot("snap", chunkBytes: 8192)
        let readHeld = originDevice.hold(.read, in: 16384..<20480)
        let reader = Task { try await snapshot.readBytes(at: 16384, count: 4096) }
        await readHeld.arrived.wait()
        let writes = originDevice.counters.writes
        // Same 8 KiB chunk (16384..<24576), bytes the read does not cover.
        let writer = Task { try await origin.writeBytes(pattern(0xCC, 4096), at: 20480) }
        await eventually("the write lands while the read is held") { originDevice.counters.writes == writes + 1 }
        #expect(snapshot.status.exceptions == 1)
        readHeld.release()
        try await writer.value
        #expect(try await reader.value == Array(before[16384..<20480]))
        #expect(try await snapshot.readBytes(at: 16384, count: 8192) == Array(before[16384..<24576]))
        #expect(try await origin.readBytes(at: 20480, count: 4096) == pattern(0xCC, 4096))
    }
}
