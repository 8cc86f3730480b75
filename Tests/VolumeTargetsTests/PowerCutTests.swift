import AsyncPrimitives
import BlockDevices
import ExceptionMachinery
import Testing
import TestSupport
import VolumeTargets

/// Power cuts: both devices forget a random subset of their unflushed writes (torn at sector
/// granularity) at a random instant of a random workload; after reopening, the COW store loads
/// cleanly and every snapshot still reads exactly as the origin did when it was taken.
@Suite struct PowerCutTests {
    static let trials = Int(Environment.value("SNAPVOL_POWERCUT_TRIALS") ?? "") ?? 40

    /// With `cowFills`, the COW holds only 20 chunks: it fills mid-workload, the snapshot is
    /// invalidated (header written and flushed before any origin write goes on without a
    /// copy), and the cut lands around that moment. Reopened, the store must then be either
    /// invalid or a correct snapshot: never valid with data the origin overwrote.
    @Test(arguments: [4096, 16384], [false, true])
    func snapshotsSurvivePowerCuts(chunkBytes: Int, cowFills: Bool) async throws {
        var generator = SeededGenerator.fromEnvironment()
        var cutsWithLosses = 0
        var invalidated = 0
        for trial in 0..<Self.trials {
            let size = 512 * 1024
            let rig = PowerCutRig(size: size, cowBytes: cowFills ? 20 * chunkBytes : 2 * size)
            let (originBase, cowBase, image, rail) = (rig.originBase, rig.cowBase, rig.image, rig.rail)
            let (originDevice, cowDevice, origin) = (rig.originDevice, rig.cowDevice, rig.origin)
            let geometry = try ChunkGeometry(chunkBytes: chunkBytes)
            let store = try await PersistentExceptionStore.format(cowDevice, geometry: geometry)
            _ = try await origin.attach(name: "snap", store: store)
            originDevice.trackUnflushedWrites()
            cowDevice.trackUnflushedWrites()
            // The workload runs on; the cut lands after a random number of COW writes, in the
            // middle of whatever is in flight (copies, group commits, area rollovers).
            let cutAfter = Int.random(in: 1...(cowFills ? 50 : 400), using: &generator)
            let (workload, finished) = rig.startWorkload(writes: 600, seed: generator.next())
            while cowDevice.counters.writes < cutAfter, !finished.isSignalled { await Task.yield() }
            rail.cut()
            let dropped = try await originDevice.powerCut(using: &generator) + cowDevice.powerCut(using: &generator)
            cutsWithLosses += dropped > 0 ? 1 : 0
            _ = await workload.result
            let expected = image

            let reopened = Origin(name: "origin", device: originBase)
            let reloaded: Snapshot
            do {
                reloaded = try await reopened.attach(name: "snap", store: try await PersistentExceptionStore.open(cowBase))
            } catch {
                Issue.record("trial \(trial): COW does not load after a power cut: \(error); seed \(generator.seed)")
                return
            }
            if case .invalid = reloaded.status.condition {
                invalidated += 1
                continue
            }
            if !sameBytes(try await reloaded.image(), expected) {
                Issue.record("trial \(trial): snapshot differs from the origin at its creation; seed \(generator.seed)")
                return
            }
        }
        #expect(cutsWithLosses > 0, "the cuts must have dropped or torn writes; seed \(generator.seed)")
        if cowFills { #expect(invalidated > 0, "some trials must end with the snapshot invalidated; seed \(generator.seed)") }
    }

    /// A COW extended while the origin is written (as `snapshot extend` and autoextend do), cut
    /// at a random instant; the new size is durable only after a flush, and a cut may revert it.
    /// Reopened, the store must load (no record beyond the device's end) and be invalid or a
    /// correct snapshot.
    @Test(arguments: [4096, 16384])
    func extendsSurvivePowerCuts(chunkBytes: Int) async throws {
        var generator = SeededGenerator.fromEnvironment()
        var cutsWithLosses = 0
        for trial in 0..<max(1, Self.trials / 2) {
            let size = 256 * 1024
            let rig = PowerCutRig(size: size, cowBytes: 24 * chunkBytes)
            let geometry = try ChunkGeometry(chunkBytes: chunkBytes)
            _ = try await rig.origin.attach(name: "snap", store: try await PersistentExceptionStore.format(rig.cowDevice, geometry: geometry))
            rig.originDevice.trackUnflushedWrites()
            rig.cowDevice.trackUnflushedWrites()
            let extendAfter = Int.random(in: 1...12, using: &generator)
            let cutAfter = extendAfter + Int.random(in: 1...60, using: &generator)
            let (workload, finished) = rig.startWorkload(writes: 300, seed: generator.next())
            while rig.cowDevice.counters.writes < extendAfter, !finished.isSignalled { await Task.yield() }
            try? await rig.cowDevice.resize(to: UInt64(3 * size))
            while rig.cowDevice.counters.writes < cutAfter, !finished.isSignalled { await Task.yield() }
            rig.rail.cut()
            cutsWithLosses += try await rig.originDevice.powerCut(using: &generator) + rig.cowDevice.powerCut(using: &generator) > 0 ? 1 : 0
            _ = await workload.result

            let reopened = Origin(name: "origin", device: rig.originBase)
            let reloaded: Snapshot
            do {
                reloaded = try await reopened.attach(name: "snap", store: try await PersistentExceptionStore.open(rig.cowBase))
            } catch {
                Issue.record("trial \(trial): COW does not load after a cut during an extend: \(error); seed \(generator.seed)")
                return
            }
            if case .invalid = reloaded.status.condition { continue }
            if !sameBytes(try await reloaded.image(), rig.image) {
                Issue.record("trial \(trial): snapshot differs after a cut during an extend; seed \(generator.seed)")
                return
            }
        }
        #expect(cutsWithLosses > 0, "the cuts must have dropped or torn writes; seed \(generator.seed)")
    }

    /// A cut in the middle of a merge: after reopening, the store loads, and running the merge
    /// again (as activation does for a snapshot marked merging) leaves the origin equal to the
    /// snapshot's image.
    @Test(arguments: [4096, 16384])
    func mergesSurvivePowerCuts(chunkBytes: Int) async throws {
        var generator = SeededGenerator.fromEnvironment()
        var cutsWithLosses = 0
        for trial in 0..<max(1, Self.trials / 2) {
            let size = 256 * 1024
            let rig = PowerCutRig(size: size)
            let (originBase, cowBase, image, rail) = (rig.originBase, rig.cowBase, rig.image, rig.rail)
            let (originDevice, cowDevice, origin) = (rig.originDevice, rig.cowDevice, rig.origin)
            let geometry = try ChunkGeometry(chunkBytes: chunkBytes)
            let snapshot = try await origin.attach(name: "snap", store: try await PersistentExceptionStore.format(cowDevice, geometry: geometry))
            try await rig.writeRandomly(120, using: &generator)
            originDevice.trackUnflushedWrites()
            cowDevice.trackUnflushedWrites()
            let cutAfter = originDevice.counters.writes + cowDevice.counters.writes + Int.random(in: 1...60, using: &generator)
            let finished = OneShotEvent<Void>()
            let merge = Task {
                defer { finished.signal() }
                try await origin.merge(snapshot)
            }
            while originDevice.counters.writes + cowDevice.counters.writes < cutAfter, !finished.isSignalled { await Task.yield() }
            rail.cut()
            let dropped = try await originDevice.powerCut(using: &generator) + cowDevice.powerCut(using: &generator)
            cutsWithLosses += dropped > 0 ? 1 : 0
            _ = await merge.result

            let reopened = Origin(name: "origin", device: originBase)
            do {
                let reloaded = try await reopened.attach(name: "snap", store: try await PersistentExceptionStore.open(cowBase))
                try await reopened.merge(reloaded)
            } catch {
                Issue.record("trial \(trial): the merge does not resume after a power cut: \(error); seed \(generator.seed)")
                return
            }
            if !sameBytes(originBase.contents, image) {
                Issue.record("trial \(trial): the merged origin differs from the snapshot; seed \(generator.seed)")
                return
            }
        }
        #expect(cutsWithLosses > 0, "the cuts must have dropped or torn writes; seed \(generator.seed)")
    }
}

/// An origin and a COW on memory devices behind fault injectors that share one power rail.
struct PowerCutRig {
    let originBase: MemoryBlockDevice
    let cowBase: MemoryBlockDevice
    /// The origin's content before anything was written.
    let image: [UInt8]
    let rail = PowerRail()
    let originDevice: FaultInjectingDevice
    let cowDevice: FaultInjectingDevice
    let origin: Origin
    let size: Int

    init(size: Int, cowBytes: Int? = nil) {
        self.size = size
        originBase = patternedDevice(size: size)
        cowBase = MemoryBlockDevice(name: "cow", size: cowBytes ?? 2 * size)
        image = originBase.contents
        originDevice = FaultInjectingDevice(wrapping: originBase, rail: rail)
        cowDevice = FaultInjectingDevice(wrapping: cowBase, rail: rail)
        origin = Origin(name: "origin", device: originDevice)
    }

    /// Writes `count` random ranges (1 byte to 8 KiB) of patterned bytes to the origin.
    func writeRandomly(_ count: Int, using random: inout SeededGenerator) async throws {
        for _ in 0..<count {
            let offset = UInt64.random(in: 0..<UInt64(size - 8192), using: &random)
            let length = Int.random(in: 1...8192, using: &random)
            try await origin.writeBytes(patternBytes(seed: UInt8.random(in: 0...255, using: &random), count: length), at: offset)
        }
    }

    /// `writeRandomly` in a task of its own; `finished` fires when it ends, however it ends.
    func startWorkload(writes count: Int, seed: UInt64) -> (task: Task<Void, any Error>, finished: OneShotEvent<Void>) {
        let finished = OneShotEvent<Void>()
        let task = Task {
            defer { finished.signal() }
            var random = SeededGenerator(seed: seed)
            try await writeRandomly(count, using: &random)
        }
        return (task, finished)
    }
}
