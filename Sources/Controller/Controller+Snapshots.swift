import BlockDevices
import ExceptionMachinery
import Foundation
import VolumeTargets

extension Controller {
    /// Adopts an existing persistent COW device (one the kernel wrote, say) after checking that
    /// its header and every record fit the origin. An invalidated store is adopted as `invalid`.
    /// Returns the state it was adopted in.
    @discardableResult
    public func attachSnapshot(name: String, origin originName: String, cowPath: String, exceptionCache: UInt64? = nil) async throws -> String {
        try await command {
            var registry = self.registry
            try checkNewName(name, in: registry)
            guard let originIndex = registry.origins.firstIndex(where: { $0.name == originName }) else {
                throw ControllerError.unknownOrigin(originName)
            }
            if let user = registry.user(of: cowPath) { throw ControllerError.pathInUse(path: cowPath, by: user) }
            guard FileManager.default.fileExists(atPath: cowPath) else { throw ControllerError.pathMissing(cowPath) }
            let origin = try liveOrigin(originName)
            let device = try FileBlockDevice.open(path: cowPath).lockedAsSoleWriter()
            let (header, layout) = try await CowScanner.readHeader(device)
            guard header.magic == CowLayout.magic else { throw ControllerError.refused("\(cowPath) holds no snapshot store (magic 0): nothing to attach") }
            let store = try await PersistentExceptionStore.open(device, originChunks: layout.geometry.chunksCovering(origin.size))
            var record = SnapshotRecord(name: name, cowPath: cowPath, chunkSize: layout.geometry.chunkBytes)
            record.cowIdentity = try device.identity()
            record.exceptionCache = exceptionCache
            record.originSize = origin.size
            let snapshot = try await origin.attach(name: name, store: store, cacheBudget: record.cacheBudget)
            registry.origins[originIndex].snapshots.append(record)
            do {
                try save(registry)
            } catch {
                await origin.detach(snapshot)
                throw error
            }
            state.withLock { $0.live[originName]?.snapshots[name] = snapshot }
            let word = snapshot.status.condition.word
            events.record("\(name): attached from \(cowPath) (\(word))")
            return word
        }
    }

    /// Detaches and unregisters a snapshot; deletes its COW file if snapvol created it. Refused
    /// while a client holds it open, unless `force`, which disconnects those clients first.
    public func deleteSnapshot(name: String, force: Bool = false) async throws {
        try await deleteSnapshots(names: [name], force: force)
    }

    /// Deletes several snapshots (a group, say) as one command: every name is checked first, so
    /// a refusal deletes none; then all are detached and one registry write forgets them.
    ///
    /// A snapshot being merged is refused, unless `abandoningMerge` and it cannot be attached
    /// (its COW lost): its origin, held back half merged, then comes back as it is, a mix of the
    /// snapshot's chunks and later data, which an alarm says.
    ///
    /// Returns a line for each COW file snapvol created that it kept because the path no longer
    /// holds that COW (`StoreFileRemoval`); an event says the same.
    @discardableResult
    public func deleteSnapshots(names: [String], force: Bool = false, abandoningMerge: Bool = false) async throws -> [String] {
        try await command {
            var registry = self.registry
            guard Set(names).count == names.count else { throw ControllerError.refused("a snapshot is named twice") }
            let records = try names.map { name in
                let (originRecord, record) = try snapshotRecord(named: name, in: registry, originAdvice: "use 'origin remove'")
                if record.merging { try refuseAbandoning(record, of: originRecord.name, unless: abandoningMerge) }
                return (origin: originRecord.name, record: record)
            }
            try await removing(names, force: force) {
                for (origin, record) in records {
                    let snapshot = state.withLock { $0.live[origin]?.snapshots[record.name] }
                    if let snapshot { await snapshot.origin.detach(snapshot) }
                    registry.removeSnapshot(named: record.name)
                }
                try save(registry)
            }
            var kept: [String] = []
            for (origin, record) in records {
                state.withLock { state in
                    state.live[origin]?.snapshots[record.name] = nil
                    state.live[origin]?.snapshotProblems[record.name] = nil
                }
                events.record("\(record.name): deleted")
                if let note = removeCreatedCow(of: record) { kept.append(note) }
            }
            for (origin, record) in records where record.merging {
                events.record("\(origin): merge from \(record.name) abandoned (its COW could not be attached): "
                              + "\(origin) holds part of the snapshot and part of its later data", alarm: true)
                state.withLock { $0.live[origin] = nil }
                if let originRecord = self.registry.origin(named: origin) { await activate(originRecord) }
            }
            return kept
        }
    }

    /// Deletes the COW file snapvol created for `record`, if the path still holds it; otherwise
    /// records an event and returns the line that says what was kept and why.
    func removeCreatedCow(of record: SnapshotRecord) -> String? {
        guard record.ownsCow, let reason = StoreFileRemoval.remove(record.cowPath, chunkBytes: record.chunkSize) else { return nil }
        let note = "kept \(record.cowPath), the COW snapvol created for '\(record.name)': \(reason)"
        events.record("\(record.name): \(note)")
        return note
    }

    /// Refuses to delete `record`, being merged into origin `origin`, unless `abandoning` and
    /// it cannot be attached.
    private func refuseAbandoning(_ record: SnapshotRecord, of origin: String, unless abandoning: Bool) throws {
        let attached = state.withLock { $0.live[origin]?.snapshots[record.name] != nil }
        guard abandoning else {
            if attached { try Self.refuseIfMerging(record) }
            throw ControllerError.refused("snapshot '\(record.name)' is being merged and cannot be attached: bring its COW back "
                                          + "(or 'snapshot relocate'), then run 'snapshot merge \(record.name)' to finish; "
                                          + "--abandon-merge deletes it and leaves '\(origin)' half merged")
        }
        if attached { try Self.refuseIfMerging(record) }
    }

    /// Rolls the origin back to the snapshot and consumes it. The registry marks the merge first,
    /// so a merge interrupted by a crash resumes when run again. Refused while a client holds the
    /// snapshot open, unless `force`, which disconnects those clients first (the origin's clients
    /// stay: they see it roll back, as with dm-snapshot's merge).
    public func mergeSnapshot(name: String, force: Bool = false) async throws {
        try await mergeSnapshots(names: [name], force: force)
    }

    /// Rolls several origins back, each to its snapshot (a group's, say), one after another.
    /// Every snapshot is checked first (and, unless `force`, none may be open by a client), so a
    /// refusal merges none. Each merge is marked, durable step by step and resumable, as a single
    /// one is; a failure stops the sequence with the merges before it done.
    public func mergeSnapshots(names: [String], force: Bool = false) async throws {
        try await command {
            guard Set(names).count == names.count else { throw ControllerError.refused("a snapshot is named twice") }
            let merges = try names.map { try mergeTarget($0) }
            var origins = Set<String>()
            for merge in merges where !origins.insert(merge.origin).inserted {
                throw ControllerError.refused("two of the snapshots belong to origin '\(merge.origin)': merge them one at a time")
            }
            try await removing(names, force: force) {
                for merge in merges { try await run(merge) }
            }
        }
    }

    /// A snapshot that may be merged now, checked against the registry and its live state.
    private struct MergeTarget {
        let origin: String
        let record: SnapshotRecord
        let snapshot: Snapshot
    }

    private func mergeTarget(_ name: String) throws -> MergeTarget {
        let registry = self.registry
        guard let (originRecord, record) = registry.snapshot(named: name) else { throw ControllerError.unknownSnapshot(name) }
        guard let snapshot = state.withLock({ $0.live[originRecord.name]?.snapshots[name] }) else {
            let reason = state.withLock { state in
                state.live[originRecord.name]?.snapshotProblems[name]?.reason ?? state.live[originRecord.name]?.problem.map { "its origin: \($0)" }
            } ?? "not active"
            throw ControllerError.inactiveVolume(name: name, reason: reason)
        }
        guard record.persistent else { throw ControllerError.refused("snapshot '\(name)' is transient: only persistent snapshots can be merged") }
        if case .invalid(let reason) = snapshot.status.condition {
            throw ControllerError.refused("snapshot '\(name)' is invalid (\(reason)): it cannot be merged")
        }
        if let other = originRecord.snapshots.first(where: { $0.merging && $0.name != name }) {
            throw ControllerError.refused("origin '\(originRecord.name)' is already merging '\(other.name)'")
        }
        let inactive = state.withLock { $0.live[originRecord.name]?.snapshotProblems.filter { $0.value.state == "inactive" }.keys.sorted() } ?? []
        if !inactive.isEmpty {
            throw ControllerError.refused("origin '\(originRecord.name)' has inactive snapshots (\(inactive.joined(separator: ", "))): a merge rewrites the origin, so they would no longer match it; make their COW available, or delete them, first")
        }
        return MergeTarget(origin: originRecord.name, record: record, snapshot: snapshot)
    }

    /// Marks the merge in the registry, runs it, forgets the snapshot and its COW file.
    private func run(_ merge: MergeTarget) async throws {
        let name = merge.record.name
        var registry = self.registry
        if !merge.record.merging {
            let originIndex = registry.origins.firstIndex { $0.name == merge.origin }!
            let snapshotIndex = registry.origins[originIndex].snapshots.firstIndex { $0.name == name }!
            registry.origins[originIndex].snapshots[snapshotIndex].merging = true
            registry.origins[originIndex].closedStamp = nil
            try save(registry)
        }
        events.record("\(name): merge started")
        try await merge.snapshot.origin.merge(merge.snapshot)
        registry.removeSnapshot(named: name)
        try save(registry)
        state.withLock { $0.live[merge.origin]?.snapshots[name] = nil }
        _ = removeCreatedCow(of: merge.record)
    }

    /// Grows a file-backed COW device to `size` bytes.
    public func extendSnapshot(name: String, cowSize size: UInt64) async throws {
        try await command {
            guard let (originRecord, record) = registry.snapshot(named: name) else { throw ControllerError.unknownSnapshot(name) }
            let snapshot = state.withLock { $0.live[originRecord.name]?.snapshots[name] }
            let opened = try snapshot?.store.device ?? FileBlockDevice.open(path: record.cowPath).lockedAsSoleWriter()
            guard let device = opened as? FileBlockDevice, device.kind == .regularFile else { throw ControllerError.notResizable(record.cowPath) }
            guard size > device.size else { throw ControllerError.cannotShrink(path: record.cowPath, current: device.size, requested: size) }
            try await device.resize(to: size, reserve: true)
            if let snapshot { snapshot.origin.clearOverflow(snapshot) }
            events.record("\(name): COW extended to \(ByteSize.describe(size))")
        }
    }

    /// Snapshot `name` and its origin in `registry`; an origin's name is refused with `originAdvice`.
    func snapshotRecord(named name: String, in registry: Registry, originAdvice: String) throws -> (OriginRecord, SnapshotRecord) {
        guard let found = registry.snapshot(named: name) else {
            throw registry.origin(named: name) != nil
                ? ControllerError.refused("'\(name)' is an origin: \(originAdvice)")
                : ControllerError.unknownSnapshot(name)
        }
        return (found.origin, found.snapshot)
    }

    /// Refuses a snapshot marked as being merged: only `snapshot merge` may go on with it.
    static func refuseIfMerging(_ record: SnapshotRecord) throws {
        if record.merging { throw ControllerError.refused("snapshot '\(record.name)' is being merged: run 'snapshot merge \(record.name)' to finish") }
    }
}
