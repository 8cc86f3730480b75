import AsyncPrimitives
import BlockDevices
import ExceptionMachinery
import Testing
import TestSupport
import VolumeTargets

@Suite struct MergeTests {
    @Test(arguments: [4096, 65536])
    func mergeRollsTheOriginBackAndKeepsOtherSnapshots(_ chunkBytes: Int) async throws {
        let device = patternedDevice(size: 512 << 10)
        let original = device.contents
        let origin = Origin(name: "origin", device: device)
        let target = try await origin.snapshot("target", chunkBytes: chunkBytes)
        try await target.writeBytes(pattern(0x55, 3000), at: 100_000)
        var targetImage = original
        targetImage.replaceSubrange(100_000..<103_000, with: pattern(0x55, 3000))
        try await origin.writeBytes(pattern(1, 200_000), at: 50_000)
        let afterFirst = device.contents
        let other = try await origin.snapshot("other", chunkBytes: 16384)
        try await origin.writeBytes(pattern(2, 30_000), at: 300_000)
        try await origin.merge(target)
        #expect(try await origin.readBytes(at: 0, count: 512 << 10) == targetImage)
        #expect(device.contents == targetImage)
        #expect(try await other.image() == afterFirst)
        #expect(!origin.snapshots.contains { $0 === target })
        #expect(target.status.condition == .inactive)
        #expect(try await CowScanner.scan(target.store.device).exceptionCount == 0)
    }

    @Test func interruptedMergeResumesFromDisk() async throws {
        let device = patternedDevice(size: 256 << 10)
        let original = device.contents
        let cow = FaultInjectingDevice(wrapping: MemoryBlockDevice(name: "cow", size: 512 << 10))
        var origin = Origin(name: "origin", device: device)
        var snapshot = try await origin.snapshot("snap", cow: cow)
        for i in 0..<20 { try await origin.writeBytes(pattern(UInt8(i), 4096), at: UInt64(i) * 8192) }
        // Steps of two runs: three steps commit, the fourth fails writing its metadata area.
        cow.failWrites(after: 3)
        await #expect(throws: (any Error).self) { try await origin.merge(snapshot, stepBytes: 2 * 4096) }
        #expect(snapshot.status.condition.word == "merge-failed")
        #expect(snapshot.status.dmStatusLine.hasSuffix("Merge failed"))
        cow.clearFaults()
        // "Restart": a new origin object, the snapshot re-attached from its COW, merge run again.
        origin = Origin(name: "origin", device: device)
        snapshot = try await origin.attach(name: "snap", store: try await PersistentExceptionStore.open(cow))
        if case .invalid = snapshot.status.condition {
            Issue.record("a failed merge step must not invalidate the store")
            return
        }
        try await origin.merge(snapshot)
        #expect(device.contents == original)
    }

    @Test func originIOWhileMergingSeesTheMergedView() async throws {
        let device = patternedDevice(size: 128 << 10)
        let original = device.contents
        let cow = FaultInjectingDevice(wrapping: MemoryBlockDevice(name: "cow", size: 512 << 10))
        let origin = Origin(name: "origin", device: device)
        let snapshot = try await origin.snapshot("snap", cow: cow)
        try await origin.writeBytes(pattern(9, 64 << 10), at: 0)
        let held = cow.hold(.read, in: 2 * 4096..<(2 + 16) * 4096)
        let merging = Task { try await origin.merge(snapshot) }
        await held.arrived.wait()
        // The merge is copying back; reads of any chunk already show the snapshot's content.
        #expect(try await origin.readBytes(at: 100 << 10, count: 4096) == Array(original[(100 << 10)..<(104 << 10)]))
        let reader = Task { try await origin.readBytes(at: 0, count: 64 << 10) }
        held.release()
        #expect(try await reader.value == Array(original[0..<(64 << 10)]))
        try await merging.value
        try await origin.writeBytes(pattern(3, 10), at: 0)
        #expect(try await origin.readBytes(at: 0, count: 10) == pattern(3, 10))
    }

    /// One step copies back several runs and forgets them with one metadata write: until then,
    /// a write to a chunk of any of its runs (already copied back or not) waits, then lands on
    /// the origin. Routed to the COW instead, it would be lost when the records are forgotten.
    @Test func writesToAnyRunOfAStepWaitForTheStep() async throws {
        let device = patternedDevice(size: 256 << 10)
        let cow = FaultInjectingDevice(wrapping: MemoryBlockDevice(name: "cow", size: 512 << 10))
        let origin = Origin(name: "origin", device: device)
        let snapshot = try await origin.snapshot("snap", cow: cow)
        let chunks: [UInt64] = [40, 3, 17, 58, 9, 33]  // six runs of one chunk, in no order
        for chunk in chunks { try await origin.writeBytes(pattern(1, 4096), at: chunk * 4096) }
        // One step of six runs: the copy of the oldest (chunk 40, in COW chunk 2) is held while
        // the others are copied back.
        let held = cow.hold(.read, in: 2 * 4096..<3 * 4096)
        let merging = Task { try await origin.merge(snapshot) }
        await held.arrived.wait()
        let finished = chunks.map { _ in OneShotEvent<Void>() }
        let writers = zip(chunks, finished).map { chunk, done in
            Task {
                try await origin.writeBytes([UInt8](repeating: 7, count: 4096), at: chunk * 4096)
                done.signal()
            }
        }
        await dispatchPause(for: .milliseconds(200))
        #expect(finished.filter(\.isSignalled).count == 0, "writes to the step's runs must wait for it")
        held.release()
        try await merging.value
        for writer in writers { try await writer.value }
        for chunk in chunks {
            let at = Int(chunk) * 4096
            #expect(device.contents[at..<at + 4096].allSatisfy { $0 == 7 }, "the write to chunk \(chunk) was lost")
        }
        #expect(try await CowScanner.scan(cow.base).exceptionCount == 0)
    }
}
