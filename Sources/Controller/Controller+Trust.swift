import Foundation

extension Controller {
    /// `snapshot trust`: the operator vouches that the snapshots named still show their origin
    /// as it was (the change found was harmless: a `touch`, a COW copy that lost nothing):
    /// their suspect marks go. All names
    /// are checked first. Returns those that were suspect.
    @discardableResult
    public func trustSnapshots(names: [String]) async throws -> [String] {
        try await command {
            for name in names { _ = try snapshotRecord(named: name, in: registry, originAdvice: "only snapshots can be suspect") }
            var trusted: [(name: String, reason: String)] = []
            // In place, not through `save`, which keeps suspect marks.
            try editRegistry { registry in
                for originIndex in registry.origins.indices {
                    for index in registry.origins[originIndex].snapshots.indices {
                        let snapshot = registry.origins[originIndex].snapshots[index]
                        guard names.contains(snapshot.name), let reason = snapshot.suspectReason else { continue }
                        registry.origins[originIndex].snapshots[index].suspectReason = nil
                        trusted.append((snapshot.name, reason))
                    }
                }
            }
            for (name, reason) in trusted { events.record("\(name): trusted by the operator (it was suspect: \(reason))") }
            return trusted.map(\.name)
        }
    }
}
