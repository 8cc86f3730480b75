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

extension Controller {
    /// Creates a snapshot: validates everything first, then prepares the COW device (a new sparse
    /// file unless it exists), formats the store, joins the origin, and records it.
    public func createSnapshot(_ request: SnapshotRequest) async throws {
        try await command {
            var registry = self.registry
            try checkNewName(request.name, in: registry)
            guard let originIndex = registry.origins.firstIndex(where: { $0.name == request.origin }) else {
                throw ControllerError.unknownOrigin(request.origin)
            }
            let origin = try liveOrigin(request.origin)
            let chunkBytes = request.chunkSize ?? ChunkSizes.defaultBytes
            guard ChunkSizes.isValid(chunkBytes) else { throw ControllerError.badChunkSize("\(chunkBytes) bytes") }
            if let user = registry.user(of: request.cowPath) { throw ControllerError.pathInUse(path: request.cowPath, by: user) }
            let geometry = try ChunkGeometry(chunkBytes: chunkBytes)
            let (device, ownsCow) = try await prepareCow(request, geometry: geometry, originSize: origin.size)
            let store: any ExceptionStore
            do {
                store = request.transient
                    ? TransientExceptionStore(device: device, geometry: geometry)
                    : try await PersistentExceptionStore.format(device, geometry: geometry)
            } catch {
                if ownsCow { try? FileManager.default.removeItem(atPath: request.cowPath) }
                throw error
            }
            var record = SnapshotRecord(name: request.name, cowPath: request.cowPath, chunkSize: chunkBytes,
                                        persistent: !request.transient, ownsCow: ownsCow)
            record.exceptionCache = request.exceptionCache
            let snapshot = try await origin.attach(name: request.name, store: store, cacheBudget: record.cacheBudget)
            record.transientOwner = request.transient ? getpid() : nil
            record.created = Date()
            registry.origins[originIndex].snapshots.append(record)
            try save(registry)
            state.withLock { $0.live[request.origin]?.snapshots[request.name] = snapshot }
            events.record("\(request.name): created (COW \(request.cowPath), chunk \(ByteSize.describe(UInt64(chunkBytes))))")
        }
    }

    /// Opens or creates the COW device after every check that could refuse the request.
    private func prepareCow(_ request: SnapshotRequest, geometry: ChunkGeometry, originSize: UInt64) async throws -> (any BlockDevice, Bool) {
        let chunk = UInt64(geometry.chunkBytes)
        let path = request.cowPath
        if FileManager.default.fileExists(atPath: path) {
            let originPath = registry.origin(named: request.origin)?.path
            if originPath == path { throw ControllerError.pathInUse(path: path, by: request.origin) }
            let device = try FileBlockDevice.open(path: path)
            if let size = request.cowSize, size > device.size {
                throw ControllerError.refused("\(path) is \(device.size) bytes, smaller than --cow-size \(size); use 'snapshot extend' after creating, or a new file")
            }
            guard device.size >= 3 * chunk else { throw ControllerError.cowTooSmall(path: path, bytes: device.size, chunkBytes: geometry.chunkBytes) }
            let magic = try await device.readBytes(at: 0, count: 4)
            if magic == [0x53, 0x6E, 0x41, 0x70] && !request.force { throw ControllerError.cowHoldsStore(path) }
            return (device, false)
        }
        let size = request.cowSize ?? Self.defaultCowSize(originSize: originSize, chunkBytes: chunk)
        guard size >= 3 * chunk else { throw ControllerError.cowTooSmall(path: path, bytes: size, chunkBytes: geometry.chunkBytes) }
        return (try FileBlockDevice.create(path: path, size: size), true)
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
        try await command {
            var registry = self.registry
            guard let (originRecord, record) = registry.snapshot(named: name) else {
                throw registry.origin(named: name) != nil
                    ? ControllerError.refused("'\(name)' is an origin: use 'origin remove'")
                    : ControllerError.unknownSnapshot(name)
            }
            if record.merging { throw ControllerError.refused("snapshot '\(name)' is being merged: run 'snapshot merge \(name)' to finish") }
            try await removing([name], force: force) {
                let snapshot = state.withLock { $0.live[originRecord.name]?.snapshots[name] }
                if let snapshot { await snapshot.origin.detach(snapshot) }
                let index = registry.origins.firstIndex { $0.name == originRecord.name }!
                registry.origins[index].snapshots.removeAll { $0.name == name }
                try save(registry)
            }
            state.withLock { state in
                state.live[originRecord.name]?.snapshots[name] = nil
                state.live[originRecord.name]?.snapshotProblems[name] = nil
            }
            if record.ownsCow { try? FileManager.default.removeItem(atPath: record.cowPath) }
            events.record("\(name): deleted")
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
                registry.origins[originIndex].snapshots.remove(at: snapshotIndex)
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
