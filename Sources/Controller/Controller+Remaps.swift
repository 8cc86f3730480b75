import BlockDevices
import ExceptionMachinery
import Foundation
import VolumeTargets

extension Controller {
    func activate(_ record: RemapRecord) async {
        do {
            let data = try FileBlockDevice.open(path: record.devicePath).lockedAsSoleWriter()
            let spare = try FileBlockDevice.open(path: record.sparePath).lockedAsSoleWriter()
            let name = record.name
            try admit(data, at: record.devicePath, recorded: record.deviceIdentity, owner: "the data device of remap volume '\(name)'") { registry, identity in
                registry.updateRemap(named: name) { $0.deviceIdentity = $0.deviceIdentity ?? identity }
            }
            try admit(spare, at: record.sparePath, recorded: record.spareIdentity, owner: "the spare area of remap volume '\(name)'") { registry, identity in
                registry.updateRemap(named: name) { $0.spareIdentity = $0.spareIdentity ?? identity }
            }
            let store = try await PersistentExceptionStore.open(spare, requiredChunkBytes: record.chunkSize,
                                                                originChunks: try ChunkGeometry(chunkBytes: record.chunkSize).chunksCovering(data.size))
            let volume = try await RemapVolume.open(name: record.name, data: data, store: store)
            state.withLock { $0.remaps[record.name] = volume }
        } catch {
            state.withLock { $0.remapProblems[record.name] = "\(error)" }
        }
    }

    /// Creates a remap volume over `devicePath` with its spare area at `sparePath` (a new sparse
    /// file of `spareSize`, default 1% of the device and at least 64 chunks, unless it exists; an
    /// existing one must hold nothing formatting would destroy, unless `force`).
    public func createRemap(name: String, devicePath: String, sparePath: String, spareSize: UInt64?, chunkSize: Int?,
                            force: Bool = false) async throws {
        try await command {
            var registry = self.registry
            try checkNewName(name, in: registry)
            let chunk = chunkSize ?? 4096
            guard ChunkSizes.isValid(chunk) else { throw ControllerError.badChunkSize("\(chunk) bytes") }
            for path in [devicePath, sparePath] {
                if let user = registry.user(of: path) { throw ControllerError.pathInUse(path: path, by: user) }
            }
            guard devicePath != sparePath else { throw ControllerError.refused("the spare area must be another device than \(devicePath)") }
            guard FileManager.default.fileExists(atPath: devicePath) else { throw ControllerError.pathMissing(devicePath) }
            let data = try FileBlockDevice.open(path: devicePath).lockedAsSoleWriter()
            let geometry = try ChunkGeometry(chunkBytes: chunk)
            let spare: FileBlockDevice
            let owns = !FileManager.default.fileExists(atPath: sparePath)
            if owns {
                let size = spareSize ?? max(64 * UInt64(chunk), (data.size / 100 + UInt64(chunk) - 1) / UInt64(chunk) * UInt64(chunk))
                guard size >= 3 * UInt64(chunk) else { throw ControllerError.cowTooSmall(path: sparePath, bytes: size, chunkBytes: chunk) }
                spare = try FileBlockDevice.create(path: sparePath, size: size).lockedAsSoleWriter()
            } else {
                spare = try FileBlockDevice.open(path: sparePath).lockedAsSoleWriter()
                guard spare.size >= 3 * UInt64(chunk) else { throw ControllerError.cowTooSmall(path: sparePath, bytes: spare.size, chunkBytes: chunk) }
                if !force, let found = try await ForeignContent.found(on: spare) {
                    throw ControllerError.wouldOverwrite(path: sparePath, holds: found.description, role: "a spare area", isFile: spare.kind == .regularFile)
                }
            }
            let volume: RemapVolume
            do {
                let store = try await PersistentExceptionStore.format(spare, geometry: geometry)
                volume = try await RemapVolume.open(name: name, data: data, store: store)
            } catch {
                if owns { try? FileManager.default.removeItem(atPath: sparePath) }
                throw error
            }
            var record = RemapRecord(name: name, devicePath: devicePath, sparePath: sparePath, chunkSize: chunk, ownsSpare: owns)
            (record.deviceIdentity, record.spareIdentity) = (try data.identity(), try spare.identity())
            registry.remaps.append(record)
            try save(registry)
            state.withLock { $0.remaps[name] = volume }
            events.record("\(name): remap volume created (spare \(sparePath))")
        }
    }

    /// Remaps one chunk of a remap volume now. Returns false if it already was.
    @discardableResult
    public func addRemap(name: String, chunk: ChunkIndex) async throws -> Bool {
        try await command {
            _ = try remapIndex(named: name, in: registry)
            guard let volume = state.withLock({ $0.remaps[name] }) else {
                throw ControllerError.inactiveVolume(name: name, reason: state.withLock { $0.remapProblems[name] } ?? "unknown")
            }
            let done = try await volume.remap(chunk: chunk)
            if done { events.record("\(name): chunk \(chunk) remapped") }
            return done
        }
    }

    /// Removes remap volume `name` from the pool; its data device is left as it is. Its spare
    /// area is deleted if snapvol created it and no chunk lives there. Refused while chunks are
    /// remapped (their data lives only in the spare area) or the spare cannot be read, and while
    /// a client has it open, unless `force`, which keeps the spare area for those chunks.
    @discardableResult
    public func removeRemap(name: String, force: Bool = false) async throws -> RemapRemoval {
        try await command {
            var registry = self.registry
            let index = try remapIndex(named: name, in: registry)
            let record = registry.remaps[index]
            let volume = state.withLock { $0.remaps[name] }
            let remapped = volume.map { $0.status.remapped + $0.status.pending }
            if !force {
                guard let remapped else {
                    throw ControllerError.refused("the spare area of '\(name)' cannot be read, so whether chunks live there is not known: add --force to remove it anyway (the spare area is kept)")
                }
                guard remapped == 0 else {
                    throw ControllerError.refused("\(remapped) chunk(s) of '\(name)' live only in its spare area \(record.sparePath): copy the volume's data elsewhere first (io dump), or add --force to remove it and keep the spare area")
                }
            }
            return try await removing([name], force: force) {
                registry.remaps.remove(at: index)
                try save(registry)
                state.withLock { state in
                    state.remaps[name] = nil
                    state.remapProblems[name] = nil
                }
                volume?.retire()
                var deletes = record.ownsSpare && remapped == 0
                if deletes, let reason = StoreFileRemoval.remove(record.sparePath, chunkBytes: record.chunkSize) {
                    deletes = false
                    events.record("\(name): kept \(record.sparePath), the spare area snapvol created: \(reason)")
                }
                events.record("\(name): remap volume removed" + (deletes ? "" : " (spare \(record.sparePath) kept)"))
                return RemapRemoval(spareKept: deletes ? nil : record.sparePath, chunksInSpare: remapped)
            }
        }
    }

    /// The registry index of remap volume `name`; another volume's name is refused.
    func remapIndex(named name: String, in registry: Registry) throws -> Int {
        guard let index = registry.remaps.firstIndex(where: { $0.name == name }) else {
            throw registry.allNames.contains(name) ? ControllerError.refused("'\(name)' is not a remap volume") : ControllerError.unknownVolume(name)
        }
        return index
    }

    /// The chunk size of remap volume `name` (to turn an offset into a chunk).
    public func remapChunkSize(_ name: String) -> Int? { registry.remaps.first { $0.name == name }?.chunkSize }
}

/// What `removeRemap` did with the spare area.
public struct RemapRemoval: Sendable, Equatable {
    /// The spare area left in place (nil: deleted); it holds `chunksInSpare` chunks (nil: not known).
    public let spareKept: String?
    public let chunksInSpare: Int?
}
