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
    public var chunkSize: Int?
    public var transient = false
    public var force = false
    /// Exception-table budget in bytes (0: no limit; nil: the default).
    public var exceptionCache: UInt64?

    public init(name: String, origin: String, cowPath: String, cowSize: UInt64? = nil, chunkSize: Int? = nil,
                transient: Bool = false, force: Bool = false, exceptionCache: UInt64? = nil) {
        self.exceptionCache = exceptionCache
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

    /// The registry's record of the snapshot made from this plan.
    func record(_ snapshot: Snapshot) -> SnapshotRecord {
        var record = SnapshotRecord(name: request.name, cowPath: request.cowPath, chunkSize: geometry.chunkBytes,
                                    persistent: !request.transient, ownsCow: cow.isNew)
        record.exceptionCache = request.exceptionCache
        record.transientOwner = request.transient ? getpid() : nil
        record.created = Date()
        return record
    }
}

/// A planned snapshot whose COW store is formatted, ready to join.
private struct PreparedSnapshot {
    let attachment: SnapshotAttachment
    let ownsCow: Bool
}

extension Controller {
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
                for (plan, snapshot) in zip(plans, snapshots) {
                    var record = plan.record(snapshot)
                    if requests.count > 1 { record.takenWith = requests.map(\.name).filter { $0 != record.name } }
                    registry.origins[plan.originIndex].snapshots.append(record)
                }
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
        case .create(let size): (device, ownsCow) = (try FileBlockDevice.create(path: plan.request.cowPath, size: size), true)
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

    /// Checks the COW path: an existing device must be large enough and (without `force`) hold no
    /// store; a new file's size must hold at least 3 chunks. Creates nothing.
    private func checkCow(_ request: SnapshotRequest, geometry: ChunkGeometry, originSize: UInt64, in registry: Registry) async throws -> SnapshotPlan.Cow {
        let chunk = UInt64(geometry.chunkBytes)
        let path = request.cowPath
        if FileManager.default.fileExists(atPath: path) {
            if registry.origin(named: request.origin)?.path == path { throw ControllerError.pathInUse(path: path, by: request.origin) }
            let device = try FileBlockDevice.open(path: path)
            if let size = request.cowSize, size > device.size {
                throw ControllerError.refused("\(path) is \(device.size) bytes, smaller than --cow-size \(size); use 'snapshot extend' after creating, or a new file")
            }
            guard device.size >= 3 * chunk else { throw ControllerError.cowTooSmall(path: path, bytes: device.size, chunkBytes: geometry.chunkBytes) }
            let magic = try await device.readBytes(at: 0, count: 4)
            if magic == [0x53, 0x6E, 0x41, 0x70] && !request.force { throw ControllerError.cowHoldsStore(path) }
            return .existing(device)
        }
        let size = request.cowSize ?? Self.defaultCowSize(originSize: originSize, chunkBytes: chunk)
        guard size >= 3 * chunk else { throw ControllerError.cowTooSmall(path: path, bytes: size, chunkBytes: geometry.chunkBytes) }
        return .create(size: size)
    }

    /// 20% of the origin, rounded up to whole chunks, and at least 3 chunks.
    public static func defaultCowSize(originSize: UInt64, chunkBytes: UInt64) -> UInt64 {
        let fifth = (originSize + 4) / 5
        return max(3, (fifth + chunkBytes - 1) / chunkBytes) * chunkBytes
    }

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
            let device = try FileBlockDevice.open(path: cowPath)
            let (header, layout) = try await CowScanner.readHeader(device)
            guard header.magic == CowLayout.magic else { throw ControllerError.refused("\(cowPath) holds no snapshot store (magic 0): nothing to attach") }
            let store = try await PersistentExceptionStore.open(device, originChunks: layout.geometry.chunksCovering(origin.size))
            var record = SnapshotRecord(name: name, cowPath: cowPath, chunkSize: layout.geometry.chunkBytes)
            record.exceptionCache = exceptionCache
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
    public func deleteSnapshots(names: [String], force: Bool = false) async throws {
        try await command {
            var registry = self.registry
            guard Set(names).count == names.count else { throw ControllerError.refused("a snapshot is named twice") }
            let records = try names.map { name in
                guard let (originRecord, record) = registry.snapshot(named: name) else {
                    throw registry.origin(named: name) != nil
                        ? ControllerError.refused("'\(name)' is an origin: use 'origin remove'")
                        : ControllerError.unknownSnapshot(name)
                }
                if record.merging { throw ControllerError.refused("snapshot '\(name)' is being merged: run 'snapshot merge \(name)' to finish") }
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
            for (origin, record) in records {
                state.withLock { state in
                    state.live[origin]?.snapshots[record.name] = nil
                    state.live[origin]?.snapshotProblems[record.name] = nil
                }
                if record.ownsCow { try? FileManager.default.removeItem(atPath: record.cowPath) }
                events.record("\(record.name): deleted")
            }
        }
    }

    /// Rolls the origin back to the snapshot and consumes it. The registry marks the merge first,
    /// so a merge interrupted by a crash resumes when run again. Refused while a client holds the
    /// snapshot open, unless `force`, which disconnects those clients first (the origin's clients
    /// stay: they see it roll back, as with dm-snapshot's merge).
    public func mergeSnapshot(name: String, force: Bool = false) async throws {
        try await command {
            var registry = self.registry
            guard let (originRecord, record) = registry.snapshot(named: name) else { throw ControllerError.unknownSnapshot(name) }
            guard let snapshot = state.withLock({ $0.live[originRecord.name]?.snapshots[name] }) else {
                let reason = state.withLock { $0.live[originRecord.name]?.snapshotProblems[name]?.reason } ?? "not active"
                throw ControllerError.inactiveVolume(name: name, reason: reason)
            }
            guard record.persistent else { throw ControllerError.refused("snapshot '\(name)' is transient: only persistent snapshots can be merged") }
            if case .invalid(let reason) = snapshot.status.condition {
                throw ControllerError.refused("snapshot '\(name)' is invalid (\(reason)): it cannot be merged")
            }
            if let other = registry.origins.first(where: { $0.name == originRecord.name })?.snapshots.first(where: { $0.merging && $0.name != name }) {
                throw ControllerError.refused("origin '\(originRecord.name)' is already merging '\(other.name)'")
            }
            let originIndex = registry.origins.firstIndex { $0.name == originRecord.name }!
            let snapshotIndex = registry.origins[originIndex].snapshots.firstIndex { $0.name == name }!
            try await removing([name], force: force) {
                if !record.merging {
                    registry.origins[originIndex].snapshots[snapshotIndex].merging = true
                    try save(registry)
                }
                events.record("\(name): merge started")
                try await snapshot.origin.merge(snapshot)
                registry.removeSnapshot(named: name)
                try save(registry)
            }
            state.withLock { $0.live[originRecord.name]?.snapshots[name] = nil }
            if record.ownsCow { try? FileManager.default.removeItem(atPath: record.cowPath) }
        }
    }

    /// Grows a file-backed COW device to `size` bytes.
    public func extendSnapshot(name: String, cowSize size: UInt64) async throws {
        try await command {
            guard let (originRecord, record) = registry.snapshot(named: name) else { throw ControllerError.unknownSnapshot(name) }
            let snapshot = state.withLock { $0.live[originRecord.name]?.snapshots[name] }
            guard let device = (snapshot?.store.device ?? (try? FileBlockDevice.open(path: record.cowPath))) as? FileBlockDevice,
                  device.kind == .regularFile else { throw ControllerError.notResizable(record.cowPath) }
            guard size > device.size else { throw ControllerError.cannotShrink(path: record.cowPath, current: device.size, requested: size) }
            try await device.resize(to: size, reserve: true)
            if let snapshot { snapshot.origin.clearOverflow(snapshot) }
            events.record("\(name): COW extended to \(ByteSize.describe(size))")
        }
    }
}
