import BlockDevices
import Foundation
import VolumeTargets

/// Origins written outside snapvol while no snapvol process had them open (a VM started on the
/// image while `serve` was stopped): such a write makes no copies, so the snapshots silently
/// take the new data. qemu's image locks stop it only while snapvol holds the file.
///
/// The protocol: when the process holding the pool lets an origin go (`close`), the origin's
/// write stamp (a file's modification time and size, a block device's write counters) is
/// recorded; before snapvol's own first write in a process, and before a merge rewrites the
/// origin, the record is cleared, so a crash leaves no stamp rather than an old one. An origin
/// activated with a stamp that says it was written since was written by something else: its
/// snapshots are marked suspect, which is loud (an alarm, `status`, `pool check` CRITICAL) but
/// keeps them readable, since `touch` also changes a file's stamp without a write.
extension Controller {
    /// At activation, once its snapshots are attached: marks `record`'s snapshots suspect if
    /// its device on `device` was written since it was let go, and records the new stamp (so it
    /// is reported once). Snapshots already lost (invalid, given up) are left as they are. A
    /// stamp that cannot be compared (another boot, the device set up again) is recorded anew,
    /// and an event says that writes meanwhile could not be checked.
    func checkStamp(of record: OriginRecord, on device: FileBlockDevice) {
        guard let closed = record.closedStamp, let now = try? device.stamp() else { return }
        let change = now.change(since: closed)
        if change == .unchanged { return }
        if case .unknowable(let why) = change {
            events.record("\(record.name): cannot tell whether \(record.path) was written while no snapvol process had it open: \(why)")
        }
        let detail = Self.writeDetail(change)
        let lost = detail == nil ? [] : lostSnapshots(of: record.name)
        var marked: [String] = []
        try? editRegistry { registry in
            registry.updateOrigin(at: record.path) { origin in
                origin.closedStamp = now
                guard let detail else { return }
                for index in origin.snapshots.indices {
                    let snapshot = origin.snapshots[index]
                    guard snapshot.suspectReason == nil, snapshot.staleReason == nil, !lost.contains(snapshot.name) else { continue }
                    origin.snapshots[index].suspectReason = Self.suspectReason(path: record.path, detail: detail)
                    marked.append(snapshot.name)
                }
            }
        }
        guard let detail, !marked.isEmpty else { return }
        events.record("\(record.name): MODIFIED OUTSIDE SNAPVOL (\(record.path): \(detail), while no snapvol process had it open): "
                      + "\(marked.count == 1 ? "snapshot" : "snapshots") \(marked.joined(separator: ", ")) may show data written since taken",
                      alarm: true)
    }

    /// The snapshots of origin `name` already lost (invalid, given up), which a suspect mark
    /// would add nothing to.
    private func lostSnapshots(of name: String) -> Set<String> {
        state.withLock { state in
            guard let live = state.live[name] else { return [] }
            let invalid = live.snapshots.filter { if case .invalid = $0.value.status.condition { return true } else { return false } }
            return Set(invalid.keys).union(live.snapshotProblems.filter { $0.value.state == "invalid" }.keys)
        }
    }

    /// Clears the stamp of the origin at `path` before something in this process rewrites it
    /// (a merge), unless already clear.
    func clearStamp(ofOriginAt path: String) throws {
        try editRegistry { registry in registry.updateOrigin(at: path) { $0.closedStamp = nil } }
    }

    /// At `close`, once the origins are retired: records the stamp of every origin this process
    /// had open, and the exception count of each of their snapshots (`exceptionCounts`, by
    /// name), in one save (none when nothing changed). A block device is flushed first, so that
    /// none of this process's writes reaches its counters after they are read.
    func recordStamps(of origins: [Origin], exceptionCounts: [String: Int] = [:]) async {
        var stamps: [(String, WriteStamp)] = []
        for origin in origins {
            guard let device = origin.device as? FileBlockDevice else { continue }
            if device.kind == .blockDevice { try? await device.flush() }
            if let stamp = try? device.stamp() { stamps.append((origin.name, stamp)) }
        }
        guard !stamps.isEmpty || !exceptionCounts.isEmpty else { return }
        try? editRegistry { registry in
            for (name, stamp) in stamps {
                guard let index = registry.origins.firstIndex(where: { $0.name == name }) else { continue }
                registry.origins[index].closedStamp = stamp
            }
            for (name, count) in exceptionCounts {
                registry.updateSnapshot(named: name) { if !$0.merging { $0.closedExceptions = count } }
            }
        }
    }

    /// What a change of stamp says was done to an origin ("changed at …", "… written"), nil
    /// when it says nothing was, or nothing can be told.
    static func writeDetail(_ change: WriteStamp.Change) -> String? {
        switch change {
        case .unchanged, .unknowable: return nil
        case .modified(let time): return "changed at \(SnapshotReport.timestamp(time))"
        case .written(let bytes): return "\(ByteSize.describe(bytes)) written or discarded"
        }
    }

    /// Why a snapshot of the origin at `path`, found changed as `detail` says, is suspect.
    static func suspectReason(path: String, detail: String) -> String {
        "its origin \(path) was modified outside snapvol (\(detail), while no snapvol process had it open): it may show data written since it was taken"
    }
}
