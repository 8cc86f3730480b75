import BlockDevices
import Foundation
import VolumeTargets

/// What `resizeOrigin` did: the origin's size before and after (equal: nothing was done).
public struct OriginResize: Sendable, Equatable {
    public let old: UInt64
    public let new: UInt64
}

extension Controller {
    /// Grows or shrinks an origin that has no snapshots (a snapshot keeps the size its origin
    /// had, as a dm-snapshot's length is fixed in its table). A regular file is resized to
    /// `size` (the grown part sparse, as `origin add --size` makes it); without `size`, the
    /// device's size is read again (after `lvextend`, or `losetup --set-capacity` on a loop
    /// device). Shrinking needs `force`: the data past the new end is gone. Clients holding the
    /// origin open know only its old size, so they refuse it unless `force` disconnects them;
    /// the origin is then opened afresh at its new size.
    @discardableResult
    public func resizeOrigin(name: String, size: UInt64?, force: Bool = false) async throws -> OriginResize {
        try await command {
            let registry = self.registry
            let index = try originIndex(named: name, in: registry, snapshotAdvice: "use 'snapshot extend' for its COW")
            let record = registry.origins[index]
            let snapshots = record.snapshots.map(\.name)
            guard snapshots.isEmpty else {
                throw ControllerError.refused("origin '\(name)' has snapshots (\(snapshots.joined(separator: ", "))): a snapshot keeps its origin's size, so delete or merge them first")
            }
            let origin = try liveOrigin(name)
            guard let device = origin.device as? FileBlockDevice else { throw ControllerError.refused("origin '\(name)' cannot be resized") }
            let old = origin.size
            let new = try newSize(of: name, device: device, asked: size, old: old, force: force)
            if new == old { return OriginResize(old: old, new: new) }
            try await removing([name], force: force) {
                state.withLock { $0.live[name] = nil }
                // Its last writes land before the size changes; a client still finishing a
                // request gets errors from now on, not the old size.
                await origin.retire()
                do {
                    if size != nil { try await device.resize(to: new) } else { try device.remeasure() }
                } catch {
                    await activate(record, on: device)
                    throw error
                }
                await activate(record, on: device)
            }
            let resized = OriginResize(old: old, new: device.size)
            events.record("\(name): resized from \(ByteSize.describe(old)) to \(ByteSize.describe(resized.new))")
            return resized
        }
    }

    /// The size `resizeOrigin` goes to, checked: `asked` for a regular file, else the device's own.
    private func newSize(of name: String, device: FileBlockDevice, asked: UInt64?, old: UInt64, force: Bool) throws -> UInt64 {
        guard let asked else {
            let measured = try device.measuredSize()
            guard measured > 0, measured % 512 == 0 else {
                throw ControllerError.refused("\(device.name): size \(measured) is not a positive multiple of 512 bytes")
            }
            return measured
        }
        guard device.kind == .regularFile else {
            throw ControllerError.refused("origin '\(name)' is a block device: resize it with its own tools (lvextend, losetup --set-capacity), then run 'snapvol origin resize \(name)' without --size")
        }
        guard asked > 0, asked % 512 == 0 else { throw ControllerError.refused("origin size \(asked) must be a positive multiple of 512 bytes") }
        if asked < old && !force {
            throw ControllerError.refused("shrinking origin '\(name)' from \(ByteSize.describe(old)) to \(ByteSize.describe(asked)) discards the data past \(ByteSize.describe(asked)): add --force")
        }
        return asked
    }
}
