import Foundation

extension Controller {
    /// `snapshot trust`: the operator vouches that the snapshots named still show their origin
    /// as it was (the change found was harmless: a `touch`, a COW copy that lost nothing):
    /// their suspect marks go. All names are checked first. Returns those that were suspect, in
    /// the order named.
    @discardableResult
    public func trustSnapshots(names: [String]) async throws -> [String] {
        try await command {
            for name in names { _ = try snapshotRecord(named: name, in: registry, originAdvice: "only snapshots can be suspect") }
            var trusted: [(name: String, reason: String)] = []
            // In place, not through `save`, which keeps suspect marks.
            try editRegistry { registry in
                for name in names {
                    registry.updateSnapshot(named: name) { snapshot in
                        guard let reason = snapshot.suspectReason else { return }
                        snapshot.suspectReason = nil
                        trusted.append((name, reason))
                    }
                }
            }
            for (name, reason) in trusted { events.record("\(name): trusted by the operator (it was suspect: \(reason))") }
            return trusted.map(\.name)
        }
    }
}
