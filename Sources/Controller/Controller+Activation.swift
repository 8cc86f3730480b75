import BlockDevices
import ExceptionMachinery
import Foundation
import VolumeTargets

extension Controller {
    /// Opens an origin's device, taking qemu's image locks (no VM or qemu tool writes it behind
    /// its snapshots' back), and attaches each of its snapshots (metadata first: resume).
    /// A volume that cannot be activated is recorded with the reason instead of failing the pool.
    func activate(_ record: OriginRecord) async {
        let device: FileBlockDevice
        do {
            device = try FileBlockDevice.open(path: record.path).lockedAsSoleWriter()
            try admit(device, at: record.path, recorded: record.deviceIdentity, owner: "origin '\(record.name)'") { registry, identity in
                registry.updateOrigin(at: record.path) { $0.deviceIdentity = $0.deviceIdentity ?? identity }
            }
        } catch {
            state.withLock { $0.live[record.name] = LiveOrigin(problem: "\(error)") }
            return
        }
        await activate(record, on: device)
    }

    /// Makes the origin of `record` on `device` (opened already) and attaches its snapshots.
    func activate(_ record: OriginRecord, on device: FileBlockDevice) async {
        // A merge resumed below rewrites the origin: its stamp goes first.
        let merging = record.snapshots.contains(where: \.merging)
        if merging { try? clearStamp(ofOriginAt: record.path) }
        let origin = Origin(name: record.name, device: device, writeBack: true, onEvent: { [events] in
            events.record(Self.describe($0), alarm: Self.isAlarm($0), logged: !Self.isProgress($0))
        })
        state.withLock { $0.live[record.name] = LiveOrigin(origin: origin) }
        for snapshot in record.snapshots { await activate(snapshot, of: origin) }
        if let stalled = stalledMerge(of: record) {
            await withdraw(origin, problem: stalled)
            return
        }
        if !merging { checkStamp(of: record, on: device) }
        guardFirstWrite(origin)
    }

    /// Why `record`'s origin, just activated, must not be used: a merge was under way (the
    /// origin already holds part of the snapshot) and the merging snapshot could not be
    /// attached to go on with it. Used so, the origin would show a mix of merged and unmerged
    /// chunks, and its first write would give the merging snapshot up, leaving it so for good.
    private func stalledMerge(of record: OriginRecord) -> String? {
        guard let merging = record.snapshots.first(where: \.merging) else { return nil }
        return state.withLock { state -> String? in
            guard state.live[record.name]?.snapshots[merging.name] == nil else { return nil }
            return Self.stalledMerge(of: merging.name, because: state.live[record.name]?.snapshotProblems[merging.name]?.reason ?? "not attached")
        }
    }

    /// Why an origin is held back: snapshot `name`, being merged into it, cannot be attached
    /// `because`.
    static func stalledMerge(of name: String, because why: String) -> String {
        "being merged from snapshot '\(name)', which cannot be attached (\(why)): "
            + "unavailable until it can, so that nothing reads or writes it half merged "
            + "(bring its COW back, or 'snapshot relocate \(name) PATH')"
    }

    /// Takes `origin`, just activated, out of service again with its snapshots, as inactive for
    /// `problem`.
    private func withdraw(_ origin: Origin, problem: String) async {
        let attached = state.withLock { Array(($0.live[origin.name]?.snapshots ?? [:]).values) }
        await origin.retire()
        for snapshot in attached { await origin.detach(snapshot) }
        state.withLock { $0.live[origin.name] = LiveOrigin(problem: problem) }
    }

    func activate(_ record: SnapshotRecord, of origin: Origin) async {
        if let stale = record.staleReason { return await giveUp(record, of: origin, stale) }
        do {
            let snapshot = try await attach(record, to: origin)
            if record.merging { try await origin.beginMerge(snapshot) }
            state.withLock { $0.live[origin.name]?.snapshots[record.name] = snapshot }
            checkExceptionCount(of: record, attached: snapshot)
        } catch let lost as LostTransient {
            state.withLock { $0.live[origin.name]?.snapshotProblems[record.name] = ("invalid", lost.reason) }
        } catch {
            state.withLock { $0.live[origin.name]?.snapshotProblems[record.name] = ("inactive", "\(error)") }
        }
    }

    private func attach(_ record: SnapshotRecord, to origin: Origin) async throws -> Snapshot {
        guard record.persistent else {
            guard record.transientOwner == getpid() else {
                throw LostTransient(reason: "transient snapshot lost when its owning process \(record.transientOwner.map(String.init) ?? "?") exited")
            }
            throw ControllerError.refused("transient snapshot cannot be re-attached")
        }
        if let resized = record.resizedOrigin(origin.name, size: origin.size) { throw ControllerError.refused(resized) }
        let device = try FileBlockDevice.open(path: record.cowPath).lockedAsSoleWriter()
        try admit(device, at: record.cowPath, recorded: record.cowIdentity, owner: "the COW of snapshot '\(record.name)'") { registry, identity in
            registry.updateSnapshot(named: record.name) { $0.cowIdentity = $0.cowIdentity ?? identity }
        }
        let geometry = try ChunkGeometry(chunkBytes: record.chunkSize)
        let store = try await PersistentExceptionStore.open(device, requiredChunkBytes: record.chunkSize,
                                                            originChunks: geometry.chunksCovering(origin.size))
        return try await origin.attach(name: record.name, store: store, cacheBudget: record.cacheBudget)
    }

    /// Whether `event` needs an operator: a snapshot lost, a merge failed.
    static func isAlarm(_ event: VolumeEvent) -> Bool {
        switch event {
        case .snapshotInvalidated, .snapshotOverflowed, .mergeFailed: return true
        case .mergeProgress, .mergeFinished: return false
        }
    }

    /// Whether `event` only reports progress (kept out of the event log).
    static func isProgress(_ event: VolumeEvent) -> Bool {
        if case .mergeProgress = event { return true }
        return false
    }

    static func describe(_ event: VolumeEvent) -> String {
        switch event {
        case let .snapshotInvalidated(snapshot, reason): return "\(snapshot): INVALIDATED (\(reason))"
        case let .snapshotOverflowed(snapshot): return "\(snapshot): overflow: COW full, snapshot writes now fail"
        case let .mergeProgress(snapshot, remaining, total): return "\(snapshot): merge \(total - remaining)/\(total)"
        case let .mergeFinished(snapshot): return "\(snapshot): merge finished"
        case let .mergeFailed(snapshot, reason): return "\(snapshot): merge failed (\(reason))"
        }
    }
}

struct LostTransient: Error {
    let reason: String
}
