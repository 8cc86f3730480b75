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

    /// Admits `device`, opened at `path` for `owner`, as the device recorded there: refuses
    /// another device (`otherDevice`), and when none was recorded (a pool older than
    /// identities) records its identity through `learn`.
    func admit(_ device: FileBlockDevice, at path: String, recorded: String?, owner: String,
               learn: (inout Registry, String) -> Void) throws {
        if let other = Self.otherDevice(device, at: path, recorded: recorded, owner: owner) { throw ControllerError.refused(other) }
        guard recorded == nil, let identity = try? device.identity() else { return }
        try? editRegistry { learn(&$0, identity) }
    }
}
