import ExceptionMachinery
import VolumeTargets

extension Controller {
    /// The status of every origin and snapshot (or of the one named, with its origin).
    public func status(only name: String? = nil) throws -> PoolStatus {
        let (registry, live, remaps, remapProblems) = state.withLock { ($0.registry, $0.live, $0.remaps, $0.remapProblems) }
        if let name, !registry.allNames.contains(name) { throw ControllerError.unknownVolume(name) }
        var origins: [OriginStatus] = []
        for record in registry.origins {
            let entry = live[record.name]
            let size = entry?.origin?.size ?? 0
            let io = entry?.origin?.counters.snapshot ?? IOFigures()
            var snapshots: [SnapshotReport] = []
            for snapshotRecord in record.snapshots where name == nil || name == record.name || name == snapshotRecord.name {
                var report: SnapshotReport
                if let snapshot = entry?.snapshots[snapshotRecord.name] {
                    report = SnapshotReport(record: snapshotRecord, origin: record.name, status: snapshot.status)
                } else {
                    let problem = entry?.snapshotProblems[snapshotRecord.name] ?? ("inactive", entry?.problem ?? "origin inactive")
                    // Its origin is writable: say what its next write does (`GuardedOrigin`).
                    let warning = problem.state == "inactive" && entry?.origin != nil ? "; the origin's next write gives it up" : ""
                    report = SnapshotReport(record: snapshotRecord, origin: record.name, state: problem.state,
                                            reason: problem.reason + warning, originSize: size)
                }
                report.clients = claims.clients(of: snapshotRecord.name)
                snapshots.append(report)
            }
            if let name, name != record.name, snapshots.isEmpty { continue }
            var report = OriginStatus(name: record.name, path: record.path, size: size,
                                      state: entry?.origin == nil ? "inactive" : "active", reason: entry?.problem,
                                      readBytes: io.readBytes, writeBytes: io.writeBytes, queued: entry?.origin?.queuedWrites,
                                      snapshots: snapshots)
            report.clients = claims.clients(of: record.name)
            report.deviceIdentity = record.deviceIdentity
            if entry?.origin != nil { (report.readOps, report.writeOps) = (io.readOps, io.writeOps) }
            origins.append(report)
        }
        let remapReports = registry.remaps.filter { name == nil || $0.name == name }.map { record in
            var report = RemapReport(record: record, volume: remaps[record.name], problem: remapProblems[record.name])
            report.clients = claims.clients(of: record.name)
            return report
        }
        return PoolStatus(pool: location.directory, origins: origins, remaps: remapReports)
    }
}
