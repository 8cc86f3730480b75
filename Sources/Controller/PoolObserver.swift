import BlockDevices
import ExceptionMachinery
import Foundation
import VolumeTargets

extension Controller {
    /// The chunk map of an active snapshot (see `Origin.chunkMap`).
    public func chunkMap(snapshot name: String, cells: Int) -> [Double]? {
        guard let snapshot = state.withLock({ $0.live.values.compactMap { $0.snapshots[name] }.first }) else { return nil }
        return snapshot.origin.chunkMap(of: snapshot, cells: cells).map(\.held)
    }
}

/// Reads a pool's figures from disk without its lock and without opening anything for writing:
/// the source of read-only monitoring. Figures are those of the committed metadata.
public enum PoolObserver {
    public static func registry(_ location: PoolLocation) throws -> Registry { try RegistryFile.load(location) }

    /// The pool's recent events, from its event log.
    public static func events(_ location: PoolLocation) throws -> [EventJournal.Entry] {
        _ = try RegistryFile.load(location)
        return EventLog(path: location.eventsPath).tail(EventJournal.capacity)
    }

    public static func status(_ location: PoolLocation) throws -> PoolStatus {
        let registry = try RegistryFile.load(location)
        var origins: [OriginStatus] = []
        let opened = registry.origins.map { try? FileBlockDevice.open(path: $0.path, readOnly: true) }
        let others = zip(registry.origins, opened).map { origin, device in
            device.flatMap { Controller.otherDevice($0, at: origin.path, recorded: origin.deviceIdentity, owner: "origin '\(origin.name)'") }
        }
        let devices = zip(opened, others).map { device, other in other == nil ? device : nil }
        var stamps: [String: WriteStamp] = [:]
        for (origin, device) in zip(registry.origins, devices) { stamps[origin.path] = try? device?.stamp() }
        let suspects = try outsideWrites(registry, stamps, registryAfter: RegistryFile.load(location))
        for (index, (origin, device)) in zip(registry.origins, devices).enumerated() {
            let size = device?.size ?? 0
            let snapshots = origin.snapshots.map { record in
                var report = report(record, origin: origin.name, originSize: size)
                if report.suspect == nil, record.staleReason == nil { report.suspect = suspects[origin.path] }
                return report
            }
            // As a holder would find it: held back by a merge that cannot go on.
            let mergingName = origin.snapshots.first(where: \.merging)?.name
            let stalledReport = snapshots.first { $0.state == "inactive" && $0.name == mergingName }
            let stalled = stalledReport.map { Controller.stalledMerge(of: $0.name, because: $0.reason ?? "not attached") }
            let problem: String? = others[index] ?? stalled ?? (device == nil ? "cannot open \(origin.path)" : nil)
            var originStatus = OriginStatus(name: origin.name, path: origin.path, size: size, state: problem == nil ? "active" : "inactive",
                                            reason: problem, readBytes: 0, writeBytes: 0, snapshots: snapshots)
            originStatus.deviceIdentity = origin.deviceIdentity
            origins.append(originStatus)
        }
        let remaps = registry.remaps.map { record -> RemapReport in
            let data = try? FileBlockDevice.open(path: record.devicePath, readOnly: true)
            do {
                let spare = try FileBlockDevice.open(path: record.sparePath, readOnly: true)
                if let other = Controller.otherDevice(spare, at: record.sparePath, recorded: record.spareIdentity, owner: "the spare area of remap volume '\(record.name)'")
                    ?? data.flatMap({ Controller.otherDevice($0, at: record.devicePath, recorded: record.deviceIdentity, owner: "the data device of remap volume '\(record.name)'") }) {
                    throw ControllerError.refused(other)
                }
                return RemapReport(record: record, scan: try awaitScan(spare), dataSize: data?.size ?? 0, spareSize: spare.size, problem: nil)
            } catch {
                return RemapReport(record: record, scan: nil, dataSize: data?.size ?? 0, spareSize: 0, problem: "\(error)")
            }
        }
        return PoolStatus(pool: location.directory, origins: origins, remaps: remaps)
    }

    /// The suspect reason of each origin file whose stamp `stamps` (taken between the two loads
    /// of the registry) differs from the closed stamp both loads agree on: a write outside
    /// snapvol that no holder has seen yet (`Controller.checkStamp` marks it when one does). A
    /// stamp that changed between the loads is a holder's own (cleared before its first write,
    /// recorded when it lets go), and judges nothing.
    static func outsideWrites(_ before: Registry, _ stamps: [String: WriteStamp], registryAfter after: Registry) -> [String: String] {
        var suspects: [String: String] = [:]
        for origin in before.origins {
            guard let closed = origin.closedStamp, after.origins.first(where: { $0.path == origin.path })?.closedStamp == closed,
                  let change = stamps[origin.path]?.change(since: closed), let detail = Controller.writeDetail(change) else { continue }
            suspects[origin.path] = Controller.suspectReason(path: origin.path, detail: detail)
        }
        return suspects
    }

    static func report(_ record: SnapshotRecord, origin: String, originSize: UInt64) -> SnapshotReport {
        guard record.persistent else {
            return SnapshotReport(record: record, origin: origin, state: "inactive", reason: "transient: held in its owner's memory", originSize: originSize)
        }
        if let stale = record.staleReason {
            return SnapshotReport(record: record, origin: origin, state: "invalid", reason: stale, originSize: originSize)
        }
        if originSize > 0, let resized = record.resizedOrigin(origin, size: originSize) {
            return SnapshotReport(record: record, origin: origin, state: "inactive", reason: resized, originSize: originSize)
        }
        let scan: CowScan
        let device: FileBlockDevice
        do {
            device = try FileBlockDevice.open(path: record.cowPath, readOnly: true)
            if let other = Controller.otherDevice(device, at: record.cowPath, recorded: record.cowIdentity, owner: "the COW of snapshot '\(record.name)'") {
                throw ControllerError.refused(other)
            }
            scan = try awaitScan(device)
        } catch {
            return SnapshotReport(record: record, origin: origin, state: "inactive", reason: "\(error)", originSize: originSize)
        }
        var condition: SnapshotCondition = record.merging ? .merging : .active
        if scan.state == .invalid { condition = .invalid(reason: "invalidated on disk") }
        let status = SnapshotStatus(name: record.name, condition: condition, chunkBytes: scan.layout.geometry.chunkBytes,
                                    persistent: true, exceptions: scan.exceptionCount, pendingExceptions: 0,
                                    usage: scan.usage(deviceBytes: device.size), io: IOFigures(),
                                    sizeSectors: originSize / UInt64(sectorBytes))
        var report = SnapshotReport(record: record, origin: origin, status: status)
        if report.suspect == nil, condition == .active, let closed = record.closedExceptions, scan.exceptionCount < closed {
            report.suspect = Controller.cowWentBack(record, holding: scan.exceptionCount, closed: closed)
        }
        return report
    }

    /// Runs the async scan to completion from synchronous code (the monitor's refresh).
    private static func awaitScan(_ device: FileBlockDevice) throws -> CowScan {
        let result = ScanBox()
        let done = DispatchSemaphore(value: 0)
        Task.detached {
            do { result.set(.success(try await CowScanner.scan(device))) } catch { result.set(.failure(error)) }
            done.signal()
        }
        done.wait()
        return try result.get()
    }
}

/// Hands a scan result from the detached task to the waiting thread.
// @unchecked Sendable: written once before the semaphore is signalled, read once after the wait.
private final class ScanBox: @unchecked Sendable {
    private var result: Result<CowScan, any Error>?
    func set(_ value: Result<CowScan, any Error>) { result = value }
    func get() throws -> CowScan { try result!.get() }
}
