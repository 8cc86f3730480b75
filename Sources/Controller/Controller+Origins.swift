import BlockDevices
import Foundation
import VolumeTargets

extension Controller {
    /// Registers an origin: an existing regular file or block device, or a new sparse file of `size`.
    /// An existing one holding an exception store (a COW, a spare area) is refused unless `force`.
    public func addOrigin(name: String, path: String, size: UInt64?, force: Bool = false) async throws {
        try await command {
            var registry = self.registry
            try checkNewName(name, in: registry)
            if let user = registry.user(of: path) { throw ControllerError.pathInUse(path: path, by: user) }
            let exists = FileManager.default.fileExists(atPath: path)
            var identity: String?
            if let size {
                if exists { throw ControllerError.pathExists(path) }
                guard size > 0, size % 512 == 0 else { throw ControllerError.refused("origin size \(size) must be a positive multiple of 512 bytes") }
                _ = try FileBlockDevice.create(path: path, size: size)
            } else {
                guard exists else { throw ControllerError.pathMissing(path) }
                let device = try FileBlockDevice.open(path: path, readOnly: true)
                guard device.size > 0, device.size % 512 == 0 else {
                    let format = ImageFormat.detect(at: path).map { " (it is a \($0) image: convert it to raw first, qemu-img convert -O raw)" } ?? ""
                    throw ControllerError.refused("\(path): size \(device.size) is not a positive multiple of 512 bytes\(format)")
                }
                try device.lockAsSoleWriter()
                if !force, try await ForeignContent.holdsExceptionStore(device) {
                    throw ControllerError.refused("\(path) holds \(ForeignContent.exceptionStore), which writes to it as an origin would destroy: adopt a COW with 'snapshot attach', or add --force to register it anyway")
                }
                identity = try device.identity()
            }
            var record = OriginRecord(name: name, path: path, createdFile: size != nil)
            record.deviceIdentity = identity
            registry.origins.append(record)
            do {
                try save(registry)
            } catch {
                if size != nil { try? FileManager.default.removeItem(atPath: path) }
                throw error
            }
            await activate(record)
        }
    }

    /// Unregisters an origin with no snapshots. Its device or file is left as it is. Refused
    /// while a client holds it open, unless `force`, which disconnects those clients first.
    public func removeOrigin(name: String, force: Bool = false) async throws {
        try await command {
            var registry = self.registry
            let index = try originIndex(named: name, in: registry, snapshotAdvice: "use 'snapshot delete'")
            let snapshots = registry.origins[index].snapshots.map(\.name)
            guard snapshots.isEmpty else { throw ControllerError.originHasSnapshots(origin: name, snapshots: snapshots) }
            try await removing([name], force: force) {
                registry.origins.remove(at: index)
                try save(registry)
                let removed = state.withLock { $0.live.removeValue(forKey: name) }
                // A client still finishing a request gets errors from now on.
                await removed?.origin?.retire()
            }
        }
    }

    /// The origins that are active (their device opened), in the registry's order.
    public var activeOriginNames: [String] {
        let names = registry.origins.map(\.name)
        return state.withLock { state in names.filter { state.live[$0]?.origin != nil } }
    }

    /// The registry index of origin `name`; a snapshot's name is refused with `snapshotAdvice`.
    func originIndex(named name: String, in registry: Registry, snapshotAdvice: String) throws -> Int {
        guard let index = registry.origins.firstIndex(where: { $0.name == name }) else {
            throw registry.snapshot(named: name) != nil
                ? ControllerError.refused("'\(name)' is a snapshot: \(snapshotAdvice)")
                : ControllerError.unknownOrigin(name)
        }
        return index
    }

    func checkNewName(_ name: String, in registry: Registry) throws {
        guard Registry.isValidName(name) else { throw ControllerError.badName(name) }
        if registry.allNames.contains(name) { throw ControllerError.duplicateName(name) }
    }

    func liveOrigin(_ name: String) throws -> Origin {
        try state.withLock { state in
            guard let live = state.live[name] else { throw ControllerError.unknownOrigin(name) }
            guard let origin = live.origin else { throw ControllerError.inactiveVolume(name: name, reason: live.problem ?? "unknown") }
            return origin
        }
    }
}
