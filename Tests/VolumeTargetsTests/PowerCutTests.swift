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
        let outcome = try await cutDuringWorkload(chunkBytes: chunkBytes, cowBytes: cowFills ? 20 * chunkBytes : nil,
                                                  cutAfter: 1...(cowFills ? 50 : 400))
        if cowFills { #expect(outcome.invalidated > 0, "some trials must end with the snapshot invalidated; seed \(outcome.seed)") }
    }

    /// 512-byte chunks: a metadata area holds 32 records, so the workload fills area after
    /// area and the cuts land around rollovers (the next area zeroed, the full one written).
    @Test func areaRolloversSurvivePowerCuts() async throws {
        let outcome = try await cutDuringWorkload(chunkBytes: 512, cowBytes: nil, cutAfter: 1...1500)
        #expect(outcome.mostExceptionsReloaded > 3 * 32, "cuts must land after several full areas; seed \(outcome.seed)")
    }

    /// What `cutDuringWorkload` saw over its trials.
    struct CutOutcome {
        var seed: UInt64
        var invalidated = 0
        var mostExceptionsReloaded = 0
    }

    /// Trials: a random workload on a fresh snapshot, a power cut after a random number of COW
    /// writes (in the middle of whatever is in flight: copies, group commits, area rollovers),
    /// then the surviving bytes reopened: the store must load and be invalid or a correct
    /// snapshot. Records an issue (and stops) at the first trial that is neither.
    private func cutDuringWorkload(chunkBytes: Int, cowBytes: Int?, cutAfter: ClosedRange<Int>) async throws -> CutOutcome {
        var generator = SeededGenerator.fromEnvironment()
        var outcome = CutOutcome(seed: generator.seed)
        var cutsWithLosses = 0
        for trial in 0..<Self.trials {
            let size = 512 * 1024
            let rig = PowerCutRig(size: size, cowBytes: cowBytes ?? 2 * size)
            _ = try await rig.attachSnapshot(chunkBytes: chunkBytes)
            rig.trackUnflushedWrites()
            let cutAt = Int.random(in: cutAfter, using: &generator)
            let (workload, finished) = rig.startWorkload(writes: 600, seed: generator.next())
            while rig.cowDevice.counters.writes < cutAt, !finished.isSignalled { await Task.yield() }
            cutsWithLosses += try await rig.cutPower(using: &generator) ? 1 : 0
            _ = await workload.result
            let expected = rig.image

            let reloaded: (image: [UInt8]?, exceptions: Int)
            do {
                reloaded = try await rig.withReopened { _, snapshot in (try await snapshot.imageIfValid(), snapshot.status.exceptions) }
            } catch {
                Issue.record("trial \(trial): COW does not load after a power cut: \(error); seed \(generator.seed)")
                return outcome
            }
            outcome.mostExceptionsReloaded = max(outcome.mostExceptionsReloaded, reloaded.exceptions)
            guard let image = reloaded.image else {
                outcome.invalidated += 1
                continue
            }
            if !sameBytes(image, expected) {
                Issue.record("trial \(trial): snapshot differs from the origin at its creation; seed \(generator.seed)")
                return outcome
            }
        }
        #expect(cutsWithLosses > 0, "the cuts must have dropped or torn writes; seed \(generator.seed)")
        return outcome
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
            _ = try await rig.attachSnapshot(chunkBytes: chunkBytes)
            rig.trackUnflushedWrites()
            let extendAfter = Int.random(in: 1...12, using: &generator)
            let cutAfter = extendAfter + Int.random(in: 1...60, using: &generator)
            let (workload, finished) = rig.startWorkload(writes: 300, seed: generator.next())
            while rig.cowDevice.counters.writes < extendAfter, !finished.isSignalled { await Task.yield() }
            try? await rig.cowDevice.resize(to: UInt64(3 * size))
            while rig.cowDevice.counters.writes < cutAfter, !finished.isSignalled { await Task.yield() }
            cutsWithLosses += try await rig.cutPower(using: &generator) ? 1 : 0
            _ = await workload.result

            let reloaded: [UInt8]?
            do {
                reloaded = try await rig.withReopened { _, snapshot in try await snapshot.imageIfValid() }
            } catch {
                Issue.record("trial \(trial): COW does not load after a cut during an extend: \(error); seed \(generator.seed)")
                return
            }
            guard let reloaded else { continue }
            if !sameBytes(reloaded, rig.image) {
                Issue.record("trial \(trial): snapshot differs after a cut during an extend; seed \(generator.seed)")
                return
            }
        }
        #expect(cutsWithLosses > 0, "the cuts must have dropped or torn writes; seed \(generator.seed)")
    }

    /// A cut in the middle of a merge: after reopening, the store loads, and running the merge
    /// again (as activation does for a snapshot marked merging) leaves the origin equal to the
    /// snapshot's image. With 512-byte chunks (32 records per area) the merge empties area
    /// after area and steps back through them; each trial picks the size of a merge step, from
    /// one chunk to more than an area.
    @Test(arguments: [512, 4096, 16384])
    func mergesSurvivePowerCuts(chunkBytes: Int) async throws {
        var generator = SeededGenerator.fromEnvironment()
        var cutsWithLosses = 0
        for trial in 0..<max(1, Self.trials / 2) {
            let size = 256 * 1024
            let rig = PowerCutRig(size: size)
            let snapshot = try await rig.attachSnapshot(chunkBytes: chunkBytes)
            try await rig.writeRandomly(120, using: &generator)
            if chunkBytes == 512 { #expect(snapshot.status.exceptions > 3 * 32, "the merge must cross areas") }
            rig.trackUnflushedWrites()
            let cutAfter = rig.deviceWrites + Int.random(in: 1...60, using: &generator)
            let stepBytes = chunkBytes * Int.random(in: 1...48, using: &generator)
            let finished = OneShotEvent<Void>()
            let merge = Task {
                defer { finished.signal() }
                try await rig.origin.merge(snapshot, stepBytes: stepBytes)
            }
            while rig.deviceWrites < cutAfter, !finished.isSignalled { await Task.yield() }
            cutsWithLosses += try await rig.cutPower(using: &generator) ? 1 : 0
            _ = await merge.result

            do {
                try await rig.withReopened { origin, snapshot in try await origin.merge(snapshot) }
            } catch {
                Issue.record("trial \(trial): the merge does not resume after a power cut: \(error); seed \(generator.seed)")
                return
            }
            if !sameBytes(rig.originBase.contents, rig.image) {
                Issue.record("trial \(trial): the merged origin differs from the snapshot; seed \(generator.seed)")
                return
            }
        }
        #expect(cutsWithLosses > 0, "the cuts must have dropped or torn writes; seed \(generator.seed)")
    }
}

extension Snapshot {
    /// The snapshot's whole image, or nil if it is invalid.
    func imageIfValid() async throws -> [UInt8]? {
        if case .invalid = status.condition { return nil }
        return try await image()
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
        // A used device, not a zeroed one: stale bytes where the next metadata area will be
        // are what a rollover must zero before the full area before it becomes durable.
        cowBase = MemoryBlockDevice(name: "cow", contents: [UInt8](repeating: 0xA5, count: cowBytes ?? 2 * size))
        image = originBase.contents
        originDevice = FaultInjectingDevice(wrapping: originBase, rail: rail)
        cowDevice = FaultInjectingDevice(wrapping: cowBase, rail: rail)
        origin = Origin(name: "origin", device: originDevice)
    }

    /// Formats a persistent store on the COW and attaches it to the origin as "snap".
    func attachSnapshot(chunkBytes: Int) async throws -> Snapshot {
        let store = try await PersistentExceptionStore.format(cowDevice, geometry: try ChunkGeometry(chunkBytes: chunkBytes))
        return try await origin.attach(name: "snap", store: store)
    }

    /// From now on both devices remember their unflushed writes, which a cut may lose.
    func trackUnflushedWrites() {
        originDevice.trackUnflushedWrites()
        cowDevice.trackUnflushedWrites()
    }

    /// Writes both devices have taken so far.
    var deviceWrites: Int { originDevice.counters.writes + cowDevice.counters.writes }

    /// Cuts the power of both devices at once; returns whether any unflushed write was lost or torn.
    func cutPower(using generator: inout SeededGenerator) async throws -> Bool {
        rail.cut()
        return try await originDevice.powerCut(using: &generator) + cowDevice.powerCut(using: &generator) > 0
    }

    /// Hands `body` what the next owner sees: a new origin on the surviving origin bytes, with
    /// "snap" attached from the surviving COW bytes. (A snapshot holds its origin unowned: the
    /// origin is `body`'s argument, so it lives until `body` returns.)
    func withReopened<T>(_ body: (Origin, Snapshot) async throws -> T) async throws -> T {
        let origin = Origin(name: "origin", device: originBase)
        let snapshot = try await origin.attach(name: "snap", store: try await PersistentExceptionStore.open(cowBase))
        return try await body(origin, snapshot)
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
