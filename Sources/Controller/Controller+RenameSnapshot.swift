import VolumeTargets

extension Controller {
    /// Renames a snapshot (to keep it from a `snapshot prune` pattern, say), in the registry, in
    /// its group's lists and in the engine. Its COW path stays as it is. Refused while it is
    /// merged, or open by a client unless `force` (which disconnects those clients: the
    /// export's name changes).
    public func renameSnapshot(_ name: String, to newName: String, force: Bool = false) async throws {
        try await command {
            let registry = self.registry
            let (originRecord, record) = try snapshotRecord(named: name, in: registry, originAdvice: "only snapshots are renamed")
            try Self.refuseIfMerging(record)
            try checkNewName(newName, in: registry)
            try await removing([name], force: force) {
                // On the registry as it is now: a stale mark made since the command began stays.
                try editRegistry { $0.renameSnapshot(name, to: newName) }
                state.withLock { state in
                    guard var live = state.live[originRecord.name] else { return }
                    if let snapshot = live.snapshots.removeValue(forKey: name) {
                        snapshot.rename(to: newName)
                        live.snapshots[newName] = snapshot
                    }
                    if let problem = live.snapshotProblems.removeValue(forKey: name) { live.snapshotProblems[newName] = problem }
                    state.live[originRecord.name] = live
                }
            }
            events.record("\(name): renamed to \(newName)")
        }
    }
}
