import BlockDevices

/// Block device names that come to name another device: `/dev/sdb` after a restart, `/dev/loop3`
/// once detached and set up again over another file. snapvol records what each origin's and
/// COW's block device is (`FileBlockDevice.identity`, from sysfs) and opens nothing as an origin
/// or a COW that is another device: read as a snapshot's COW, another device shows garbage, and
/// copies written into it destroy someone else's data (another pool's snapshot, say).
extension Controller {
    /// Why `device`, found at `path`, is not the device `owner` ("origin 'vm'") was on, recorded
    /// as `recorded`; nil when it is, or when either identity is unknown (a file, a pool older
    /// than identities, sysfs saying nothing).
    static func otherDevice(_ device: FileBlockDevice, at path: String, recorded: String?, owner: String) -> String? {
        guard let recorded, let now = otherIdentity(of: device, recorded: recorded) else { return nil }
        return "\(path) now names another device (\(now)) than the one \(owner) was on (\(recorded)): "
            + "block device names can change when the host restarts or a device is set up again; "
            + "put that device back under this name, or use a name that stays (/dev/disk/by-id/..., /dev/VG/LV)"
    }

    /// The identity of `device` when it is known and not `recorded`.
    static func otherIdentity(of device: FileBlockDevice, recorded: String) -> String? {
        guard let now = try? device.identity(), now != recorded else { return nil }
        return now
    }

    /// Records the identity of the origin at `path`, opened as `device`, if the registry has
    /// none (a pool older than identities).
    func learnIdentity(ofOriginAt path: String, on device: FileBlockDevice) {
        guard let identity = try? device.identity() else { return }
        try? editRegistry { registry in
            guard let index = registry.origins.firstIndex(where: { $0.path == path }), registry.origins[index].deviceIdentity == nil else { return }
            registry.origins[index].deviceIdentity = identity
        }
    }

    /// Records the identity of snapshot `name`'s COW, opened as `device`, if the registry has
    /// none.
    func learnIdentity(ofCowOf name: String, on device: FileBlockDevice) {
        guard let identity = try? device.identity() else { return }
        try? editRegistry { registry in
            registry.updateSnapshot(named: name) { snapshot in
                if snapshot.cowIdentity == nil { snapshot.cowIdentity = identity }
            }
        }
    }

    /// Records the identities of remap volume `name`'s devices, opened as `data` and `spare`,
    /// where the registry has none.
    func learnIdentities(ofRemap name: String, data: FileBlockDevice, spare: FileBlockDevice) {
        let (dataIdentity, spareIdentity) = ((try? data.identity()) ?? nil, (try? spare.identity()) ?? nil)
        guard dataIdentity != nil || spareIdentity != nil else { return }
        try? editRegistry { registry in
            guard let index = registry.remaps.firstIndex(where: { $0.name == name }) else { return }
            if registry.remaps[index].deviceIdentity == nil { registry.remaps[index].deviceIdentity = dataIdentity }
            if registry.remaps[index].spareIdentity == nil { registry.remaps[index].spareIdentity = spareIdentity }
        }
    }
}
