import BlockDevices
import Foundation
import VolumeTargets

/// Origins written outside snapvol while no snapvol process had them open (a VM started on the
/// image while `serve` was stopped): such a write makes no copies, so the snapshots silently
/// take the new data. qemu's image locks stop it only while snapvol holds the file.
///
/// The protocol, for origins that are regular files: when the process holding the pool lets an
/// origin go (`close`), the file's stamp (modification time and size) is recorded; before
/// snapvol's own first write in a process, and before a merge rewrites the origin, the record
/// is cleared, so a crash leaves no stamp rather than an old one. An origin activated with a
/// stamp that no longer matches was changed by something else: its snapshots are marked
/// suspect, which is loud (an alarm, `status`, `pool check` CRITICAL) but keeps them readable,
/// since `touch` also changes the stamp without a write.
extension Controller {
    /// At activation, once its snapshots are attached: marks `record`'s snapshots suspect if its
    /// file on `device` no longer has the stamp it was let go with, and records the new stamp
    /// (so it is reported once). Snapshots already lost (invalid, given up) are left as they are.
    func checkStamp(of record: OriginRecord, on device: FileBlockDevice) {
        guard let closed = record.closedStamp, let now = try? device.stamp(), now != closed else { return }
        let when = SnapshotReport.timestamp(now.modified)
        let reason = Self.suspectReason(path: record.path, changed: now)
        let lost = state.withLock { state -> Set<String> in
            guard let live = state.live[record.name] else { return [] }
            let invalid = live.snapshots.filter { if case .invalid = $0.value.status.condition { return true } else { return false } }
            return Set(invalid.keys).union(live.snapshotProblems.filter { $0.value.state == "invalid" }.keys)
        }
        var marked: [String] = []
        try? editRegistry { registry in
            guard let index = registry.origins.firstIndex(where: { $0.path == record.path }) else { return }
            registry.origins[index].closedStamp = now
            for position in registry.origins[index].snapshots.indices {
                let snapshot = registry.origins[index].snapshots[position]
                guard snapshot.suspectReason == nil, snapshot.staleReason == nil, !lost.contains(snapshot.name) else { continue }
                registry.origins[index].snapshots[position].suspectReason = reason
                marked.append(snapshot.name)
            }
        }
        guard !marked.isEmpty else { return }
        events.record("\(record.name): MODIFIED OUTSIDE SNAPVOL (\(record.path) changed at \(when), while no snapvol process had it open): "
                      + "\(marked.count == 1 ? "snapshot" : "snapshots") \(marked.joined(separator: ", ")) may show data written since taken",
                      alarm: true)
    }

    /// Clears the stamp of the origin at `path` before something in this process rewrites it
    /// (a merge), unless already clear.
    func clearStamp(ofOriginAt path: String) throws {
        try editRegistry { registry in
            guard let index = registry.origins.firstIndex(where: { $0.path == path }) else { return }
            registry.origins[index].closedStamp = nil
        }
    }

    /// At `close`, once the origins are retired: records the stamp of every origin file this
    /// process had open, in one save (none when every stamp is already the recorded one).
    func recordStamps(of origins: [Origin]) {
        let stamps = origins.compactMap { origin -> (String, FileStamp)? in
            guard let device = origin.device as? FileBlockDevice, let stamp = try? device.stamp() else { return nil }
            return (origin.name, stamp)
        }
        guard !stamps.isEmpty else { return }
        try? editRegistry { registry in
            for (name, stamp) in stamps {
                guard let index = registry.origins.firstIndex(where: { $0.name == name }) else { continue }
                registry.origins[index].closedStamp = stamp
            }
        }
    }

    /// Why a snapshot of the origin file at `path`, found with stamp `changed`, is suspect.
    static func suspectReason(path: String, changed: FileStamp) -> String {
        "its origin \(path) was modified outside snapvol (at \(SnapshotReport.timestamp(changed.modified)), while no snapvol process had it open): it may show data written since it was taken"
    }
}

extension Controller {
    /// `snapshot trust`: the operator vouches that the snapshots named still show their origin
    /// as it was (the change found was harmless, a `touch`): their suspect marks go. All names
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
