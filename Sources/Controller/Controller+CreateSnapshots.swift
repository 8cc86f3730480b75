import BlockDevices
import ExceptionMachinery
import Foundation
import VolumeTargets

/// The options of `snapshot create`.
public struct SnapshotRequest: Sendable {
    public var name: String
    public var origin: String
    public var cowPath: String
    public var cowSize: UInt64?
    /// A new COW file's size as a share of its origin (30 for 30%), when `cowSize` is nil.
    public var cowPercent: Double?
    public var chunkSize: Int?
    public var transient = false
    public var force = false
    /// Exception-table budget in bytes (0: no limit; nil: the default).
    public var exceptionCache: UInt64?

    public init(name: String, origin: String, cowPath: String, cowSize: UInt64? = nil, cowPercent: Double? = nil, chunkSize: Int? = nil,
                transient: Bool = false, force: Bool = false, exceptionCache: UInt64? = nil) {
        self.exceptionCache = exceptionCache
        self.cowPercent = cowPercent
        self.name = name
        self.origin = origin
        self.cowPath = cowPath
        self.cowSize = cowSize
        self.chunkSize = chunkSize
        self.transient = transient
        self.force = force
    }
}

/// One request of `createSnapshots`, checked: what it needs, nothing created yet.
private struct SnapshotPlan {
    enum Cow {
        case existing(FileBlockDevice)
        case create(size: UInt64)

        /// Whether snapvol creates the file (and so deletes it with the snapshot).
        var isNew: Bool { if case .create = self { true } else { false } }
    }

    let request: SnapshotRequest
    let origin: Origin
    let originIndex: Int
    let geometry: ChunkGeometry
    let cow: Cow

    /// The registry's record of the snapshot made from this plan, one of `group` (the names of
    /// every snapshot the command creates), taken at `instant`.
    func record(in group: [String], at instant: Date) -> SnapshotRecord {
        var record = SnapshotRecord(name: request.name, cowPath: request.cowPath, chunkSize: geometry.chunkBytes,
                                    persistent: !request.transient, ownsCow: cow.isNew)
        record.exceptionCache = request.exceptionCache
        record.transientOwner = request.transient ? getpid() : nil
        record.created = instant
        record.originSize = origin.size
        if case .existing(let device) = cow { record.cowIdentity = try? device.identity() }
        if group.count > 1 { record.takenWith = group.filter { $0 != request.name } }
        return record
    }
}

/// A planned snapshot whose COW store is formatted, ready to join.
private struct PreparedSnapshot {
    let attachment: SnapshotAttachment
    let ownsCow: Bool
}

extension Controller {
    /// The name of a group's snapshot of `origin` when the group is named `name` (the TUI's `N`
    /// form and `snapshot create --all-origins`): `<name>-<origin>`.
    public static func groupMemberName(_ name: String, origin: String) -> String { "\(name)-\(origin)" }

    /// Where a snapshot's COW file goes when only a directory is given (the pool's, by
    /// default): `<directory>/<snapshot>.cow`.
    public static func defaultCowPath(of snapshot: String, in directory: String) -> String { "\(directory)/\(snapshot).cow" }

    /// Creates a snapshot: validates everything first, then prepares the COW device (a new sparse
    /// file unless it exists), formats the store, joins the origin, and records it.
    public func createSnapshot(_ request: SnapshotRequest) async throws {
        try await createSnapshots([request])
    }

    /// Creates snapshots of one or more origins at one instant, a consistent group (as a VM
    /// with several disks needs; see `Origin.attach(together:)`). Every request is checked
    /// before anything is written; then each COW device is prepared and formatted, all join
    /// their origins together, and one registry write records them. If any step fails, nothing
    /// stays: no snapshot joins, and COW files this command created are removed.
    public func createSnapshots(_ requests: [SnapshotRequest]) async throws {
        try await command {
            var registry = self.registry
            let plans = try await plan(requests, in: registry)
            var prepared: [PreparedSnapshot] = []
            do {
                for plan in plans { prepared.append(try await prepare(plan)) }
                let snapshots = try await Origin.attach(together: prepared.map(\.attachment))
                let group = requests.map(\.name), instant = Date()
                for plan in plans { registry.origins[plan.originIndex].snapshots.append(plan.record(in: group, at: instant)) }
                do {
                    try save(registry)
                } catch {
                    for snapshot in snapshots { await snapshot.origin.detach(snapshot) }
                    throw error
                }
                state.withLock { state in
                    for snapshot in snapshots { state.live[snapshot.origin.name]?.snapshots[snapshot.name] = snapshot }
                }
            } catch {
                for (plan, done) in zip(plans, prepared) where done.ownsCow { try? FileManager.default.removeItem(atPath: plan.request.cowPath) }
                throw error
            }
            for plan in plans {
                events.record("\(plan.request.name): created (COW \(plan.request.cowPath), chunk \(ByteSize.describe(UInt64(plan.geometry.chunkBytes))))")
            }
            if requests.count > 1 { events.record("\(requests.map(\.name).joined(separator: ", ")): created at one instant") }
        }
    }

    /// Checks every request against the registry and the others, touching nothing on disk.
    private func plan(_ requests: [SnapshotRequest], in registry: Registry) async throws -> [SnapshotPlan] {
        guard !requests.isEmpty else { throw ControllerError.refused("no snapshot to create") }
        var names = Set<String>(), cows = Set<String>(), plans: [SnapshotPlan] = []
        for request in requests {
            try checkNewName(request.name, in: registry)
            guard names.insert(request.name).inserted else { throw ControllerError.refused("snapshot name '\(request.name)' is given twice") }
            guard cows.insert(request.cowPath).inserted else { throw ControllerError.refused("COW \(request.cowPath) is given twice") }
            guard let originIndex = registry.origins.firstIndex(where: { $0.name == request.origin }) else {
                throw ControllerError.unknownOrigin(request.origin)
            }
            let origin = try liveOrigin(request.origin)
            let chunkBytes = request.chunkSize ?? ChunkSizes.defaultBytes
            guard ChunkSizes.isValid(chunkBytes) else { throw ControllerError.badChunkSize("\(chunkBytes) bytes") }
            if let user = registry.user(of: request.cowPath) { throw ControllerError.pathInUse(path: request.cowPath, by: user) }
            let geometry = try ChunkGeometry(chunkBytes: chunkBytes)
            let cow = try await checkCow(request, geometry: geometry, originSize: origin.size, in: registry)
            plans.append(SnapshotPlan(request: request, origin: origin, originIndex: originIndex, geometry: geometry, cow: cow))
        }
        return plans
    }

    /// Opens or creates the planned COW device and formats its store.
    private func prepare(_ plan: SnapshotPlan) async throws -> PreparedSnapshot {
        let (device, ownsCow): (any BlockDevice, Bool)
        switch plan.cow {
        case .existing(let existing): (device, ownsCow) = (existing, false)
        case .create(let size): (device, ownsCow) = (try FileBlockDevice.create(path: plan.request.cowPath, size: size).lockedAsSoleWriter(), true)
        }
        let store: any ExceptionStore
        do {
            store = plan.request.transient
                ? TransientExceptionStore(device: device, geometry: plan.geometry)
                : try await PersistentExceptionStore.format(device, geometry: plan.geometry)
        } catch {
            if ownsCow { try? FileManager.default.removeItem(atPath: plan.request.cowPath) }
            throw error
        }
        let attachment = SnapshotAttachment(origin: plan.origin, name: plan.request.name, store: store,
                                            cacheBudget: SnapshotRecord.cacheBudget(plan.request.exceptionCache))
        return PreparedSnapshot(attachment: attachment, ownsCow: ownsCow)
    }

    /// Checks the COW path: an existing device must be large enough and (without `force`) hold
    /// nothing formatting would destroy (`ForeignContent`); a new file's size must hold at least 3 chunks. Creates nothing.
    private func checkCow(_ request: SnapshotRequest, geometry: ChunkGeometry, originSize: UInt64, in registry: Registry) async throws -> SnapshotPlan.Cow {
        let chunk = UInt64(geometry.chunkBytes)
        let path = request.cowPath
        if FileManager.default.fileExists(atPath: path) {
            if registry.origin(named: request.origin)?.path == path { throw ControllerError.pathInUse(path: path, by: request.origin) }
            let device = try FileBlockDevice.open(path: path).lockedAsSoleWriter()
            if let size = request.cowSize, size > device.size {
                throw ControllerError.refused("\(path) is \(device.size) bytes, smaller than --cow-size \(size); use 'snapshot extend' after creating, or a new file")
            }
            guard device.size >= 3 * chunk else { throw ControllerError.cowTooSmall(path: path, bytes: device.size, chunkBytes: geometry.chunkBytes) }
            if !request.force, let found = try await ForeignContent.found(on: device) {
                throw found == .exceptionStore ? ControllerError.cowHoldsStore(path)
                    : ControllerError.wouldOverwrite(path: path, holds: found.description, role: "a snapshot's COW", isFile: device.kind == .regularFile)
            }
            return .existing(device)
        }
        let size = request.cowSize ?? Self.cowSize(percent: request.cowPercent ?? 20, originSize: originSize, chunkBytes: chunk)
        guard size >= 3 * chunk else { throw ControllerError.cowTooSmall(path: path, bytes: size, chunkBytes: geometry.chunkBytes) }
        return .create(size: size)
    }

    /// `percent` of the origin (20 by default), rounded up to whole chunks, and at least 3 chunks.
    public static func cowSize(percent: Double = 20, originSize: UInt64, chunkBytes: UInt64) -> UInt64 {
        let share = UInt64((Double(originSize) * percent / 100).rounded(.up))
        return max(3, (share + chunkBytes - 1) / chunkBytes) * chunkBytes
    }
}
