import BlockDevices
import ExceptionMachinery
import Foundation

/// A volume's device found under another name: `/dev/sdc` where it was `/dev/sdb` after a
/// restart, a COW file moved to another disk. Relocating points the registry at the new name,
/// once the device there is shown to be the volume's own (its identity, for a block device; a
/// snapshot store of the snapshot's chunk size, for a COW), and activates the volume. Only a
/// volume that could not be opened is relocated: one in use keeps its open device. With
/// `adoptingDevice`, a block device of another identity is taken as the volume's own and its
/// identity recorded: the operator's way past a device that is the same storage under another
/// identity (a loop device set up over another path to the same file).
extension Controller {
    /// Points origin `name`, which could not be opened, at `path`, and activates it with its
    /// snapshots. A file found with a stamp other than the one recorded makes them suspect, as
    /// at any activation (a copy that did not keep its modification time, say).
    /// Returns the origin's state afterwards ("active", or "inactive (why)").
    @discardableResult
    public func relocateOrigin(_ name: String, to path: String, adoptingDevice: Bool = false) async throws -> String {
        try await command {
            var registry = self.registry
            let index = try originIndex(named: name, in: registry, snapshotAdvice: "use 'snapshot relocate'")
            var record = registry.origins[index]
            try refuseIfActive(name, at: record.path, active: state.withLock { $0.live[name]?.origin != nil })
            let device = try openRelocationTarget(path, replacing: record.path, in: registry)
            record.deviceIdentity = try Self.keptIdentity(of: device, at: path, recorded: record.deviceIdentity, owner: "origin '\(name)'",
                                                          adopting: adoptingDevice)
            guard device.size > 0, device.size % 512 == 0 else {
                throw ControllerError.refused("\(path): size \(device.size) is not a positive multiple of 512 bytes")
            }
            if !adoptingDevice, try await ForeignContent.holdsExceptionStore(device) {
                throw ControllerError.refused("\(path) holds \(ForeignContent.exceptionStore), not the data of origin '\(name)': give the origin's own path (--adopt-device takes it anyway)")
            }
            let old = record.path
            record.path = path
            registry.origins[index] = record
            try save(registry)
            events.record("\(name): relocated from \(old) to \(path)" + Self.adoption(adoptingDevice, record.deviceIdentity))
            state.withLock { $0.live[name] = nil }
            await activate(self.registry.origins[index])
            return state.withLock { state in
                state.live[name]?.origin != nil ? "active" : "inactive (\(state.live[name]?.problem ?? "not activated"))"
            }
        }
    }

    /// Points snapshot `name`, whose COW could not be opened, at `cowPath`, and attaches it if
    /// its origin is active. A snapshot given up meanwhile stays invalid (and its COW at the new
    /// path is marked so).
    /// Returns the snapshot's state afterwards ("active", "inactive (why)": its origin is).
    @discardableResult
    public func relocateSnapshot(_ name: String, cowPath: String, adoptingDevice: Bool = false) async throws -> String {
        try await command {
            var registry = self.registry
            let (originRecord, record) = try snapshotRecord(named: name, in: registry, originAdvice: "use 'origin relocate'")
            let active = state.withLock { $0.live[originRecord.name]?.snapshots[name] != nil }
            try refuseIfActive(name, at: record.cowPath, active: active)
            guard record.persistent else { throw ControllerError.refused("snapshot '\(name)' is transient: it has no COW device to relocate") }
            let device = try openRelocationTarget(cowPath, replacing: record.cowPath, in: registry)
            let identity = try Self.keptIdentity(of: device, at: cowPath, recorded: record.cowIdentity, owner: "the COW of snapshot '\(name)'",
                                                 adopting: adoptingDevice)
            let (header, layout) = try await CowScanner.readHeader(device)
            guard header.magic == CowLayout.magic, layout.geometry.chunkBytes == record.chunkSize else {
                throw ControllerError.refused("\(cowPath) holds no snapshot store of \(ByteSize.describe(UInt64(record.chunkSize))) chunks: it is not the COW of snapshot '\(name)'")
            }
            guard let originIndex = registry.origins.firstIndex(where: { $0.name == originRecord.name }),
                  let index = registry.origins[originIndex].snapshots.firstIndex(where: { $0.name == name }) else { return "gone" }
            registry.origins[originIndex].snapshots[index].cowPath = cowPath
            registry.origins[originIndex].snapshots[index].cowIdentity = identity
            try save(registry)
            events.record("\(name): relocated from \(record.cowPath) to \(cowPath)"
                          + Self.adoption(adoptingDevice, registry.origins[originIndex].snapshots[index].cowIdentity))
            if let origin = state.withLock({ $0.live[originRecord.name]?.origin }) {
                state.withLock { _ = $0.live[originRecord.name]?.snapshotProblems.removeValue(forKey: name) }
                await activate(self.registry.origins[originIndex].snapshots[index], of: origin)
            } else {
                // An origin held back by this snapshot (a merge that could not go on) comes
                // back with it; one inactive for its own reasons stays so.
                state.withLock { $0.live[originRecord.name] = nil }
                await activate(self.registry.origins[originIndex])
                guard state.withLock({ $0.live[originRecord.name]?.origin }) != nil else {
                    return "inactive (its origin '\(originRecord.name)' is)"
                }
            }
            return state.withLock { state in
                let live = state.live[originRecord.name]
                if let snapshot = live?.snapshots[name] { return snapshot.status.condition.word }
                return live?.snapshotProblems[name].map { "\($0.state) (\($0.reason))" } ?? "not activated"
            }
        }
    }

    /// Points remap volume `name`, which could not be activated, at its data device's and (or)
    /// spare area's new paths, and activates it. Each device there must be the one recorded
    /// (its identity, for a block device), and the spare area must hold a store of the
    /// volume's chunk size. Returns its state afterwards.
    @discardableResult
    public func relocateRemap(_ name: String, devicePath: String?, sparePath: String?, adoptingDevice: Bool = false) async throws -> String {
        try await command {
            var registry = self.registry
            let index = try remapIndex(named: name, in: registry)
            var record = registry.remaps[index]
            let active = state.withLock { $0.remaps[name] != nil }
            try refuseIfActive(name, at: record.devicePath, active: active)
            guard devicePath != nil || sparePath != nil else { throw ControllerError.refused("give --device, --spare or both: the new paths") }
            if let devicePath {
                let device = try openRelocationTarget(devicePath, replacing: record.devicePath, in: registry)
                record.deviceIdentity = try Self.keptIdentity(of: device, at: devicePath, recorded: record.deviceIdentity,
                                                              owner: "the data device of remap volume '\(name)'", adopting: adoptingDevice)
                record.devicePath = devicePath
            }
            if let sparePath {
                let spare = try openRelocationTarget(sparePath, replacing: record.sparePath, in: registry)
                record.spareIdentity = try Self.keptIdentity(of: spare, at: sparePath, recorded: record.spareIdentity,
                                                             owner: "the spare area of remap volume '\(name)'", adopting: adoptingDevice)
                let (header, layout) = try await CowScanner.readHeader(spare)
                guard header.magic == CowLayout.magic, layout.geometry.chunkBytes == record.chunkSize else {
                    throw ControllerError.refused("\(sparePath) holds no spare area of \(ByteSize.describe(UInt64(record.chunkSize))) chunks: it is not the spare area of remap volume '\(name)'")
                }
                record.sparePath = sparePath
            }
            let old = registry.remaps[index]
            registry.remaps[index] = record
            try save(registry)
            events.record("\(name): relocated from \(old.devicePath), \(old.sparePath) to \(record.devicePath), \(record.sparePath)"
                          + Self.adoption(adoptingDevice, [record.deviceIdentity, record.spareIdentity].compactMap { $0 }.joined(separator: ", ")))
            state.withLock { $0.remapProblems[name] = nil }
            await activate(record)
            return state.withLock { state in
                state.remaps[name] != nil ? "active" : "inactive (\(state.remapProblems[name] ?? "not activated"))"
            }
        }
    }

    /// What a relocation's event adds when the operator adopted the device (`identity`: the one
    /// recorded now).
    private static func adoption(_ adopted: Bool, _ identity: String?) -> String {
        adopted ? ", its device adopted by the operator (\(identity ?? "no identity"))" : ""
    }

    /// Refuses to relocate volume `name`, found at `path`, while it is active.
    private func refuseIfActive(_ name: String, at path: String, active: Bool) throws {
        if active { throw ControllerError.refused("'\(name)' is active on \(path): only a volume whose device could not be opened is relocated") }
    }

    /// Opens the device at `path`, to replace `current`, read-only to check it, unless a
    /// volume uses the path (`current` itself is allowed: the device found there again, or
    /// adopted).
    private func openRelocationTarget(_ path: String, replacing current: String, in registry: Registry) throws -> FileBlockDevice {
        if path != current, let user = registry.user(of: path) { throw ControllerError.pathInUse(path: path, by: user) }
        guard FileManager.default.fileExists(atPath: path) else { throw ControllerError.refused("\(path) does not exist") }
        return try FileBlockDevice.open(path: path, readOnly: true)
    }

    /// The identity to record for `device`, found at `path` for `owner`: its own when
    /// `adopting` (or none was recorded); otherwise the recorded one, refusing a device of
    /// another identity.
    private static func keptIdentity(of device: FileBlockDevice, at path: String, recorded: String?, owner: String,
                                     adopting: Bool) throws -> String? {
        guard let recorded, !adopting else { return try device.identity() }
        if let now = otherIdentity(of: device, recorded: recorded) {
            throw ControllerError.refused("\(path) is another device (\(now)) than the one \(owner) was on (\(recorded))")
        }
        return recorded
    }
}
