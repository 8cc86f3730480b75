import VolumeTargets

extension Controller {
    /// Renames a snapshot (to keep it from a `snapshot prune` pattern, say), in the registry, in
    /// its group's lists and in the engine. Its COW path stays as it is. Refused while it is
    /// merged, or open by a client unless `force` (which disconnects those clients: the
    /// export's name changes).
    public func renameSnapshot(_ name: String, to newName: String, force: Bool = false) async throws {
        try await command {
            let registry = self.registry
            let (originRecord, record) = try snapshotRecord(named: name, in: registry, originAdvice: "use 'origin rename'")
            try Self.refuseIfMerging(record)
            try checkNewName(newName, in: registry)
            try await removing([name], force: force) {
                // On the registry as it is now: a stale mark made since the command began stays.
                try editRegistry { $0.renameSnapshot(name, to: newName) } apply: { state in
                    state.live[originRecord.name]?.renameSnapshot(name, to: newName)
                }
            }
            events.record("\(name): renamed to \(newName)")
        }
    }

    /// Renames an origin (after its VM was renamed, say), in the registry and in the engine; its
    /// path and its snapshots stay as they are. Refused while a client has it open unless
    /// `force` (which disconnects them: the export's name changes); its snapshots' clients stay.
    public func renameOrigin(_ name: String, to newName: String, force: Bool = false) async throws {
        try await command {
            let registry = self.registry
            _ = try originIndex(named: name, in: registry, snapshotAdvice: "use 'snapshot rename'")
            try checkNewName(newName, in: registry)
            try await removing([name], force: force) {
                // The registry, the engine's name and the live table change under the registry's
                // lock, under which a guarded origin's first write looks its snapshots up by name.
                try editRegistry { registry in
                    guard let index = registry.origins.firstIndex(where: { $0.name == name }) else { return }
                    registry.origins[index].name = newName
                } apply: { state in
                    guard let live = state.live.removeValue(forKey: name) else { return }
                    live.origin?.rename(to: newName)
                    state.live[newName] = live
                }
            }
            events.record("\(name): renamed to \(newName)")
        }
    }
}

extension LiveOrigin {
    /// Renames the live snapshot `name` and its recorded problem, if any.
    mutating func renameSnapshot(_ name: String, to newName: String) {
        if let snapshot = snapshots.removeValue(forKey: name) {
            snapshot.rename(to: newName)
            snapshots[newName] = snapshot
        }
        if let problem = snapshotProblems.removeValue(forKey: name) { snapshotProblems[newName] = problem }
    }
}
