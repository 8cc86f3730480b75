import CSnapvolSys
import SystemPackage

/// qemu's image locking (`block/file-posix.c`), which libvirt and every qemu tool honour: one-byte
/// open-file-description locks, a shared lock at 100 + i for each permission i an opener holds
/// and at 200 + i for each it does not let others have. Permissions: 0 consistent read,
/// 1 write, 2 write-unchanged, 3 resize.
enum ImageLockByte {
    static let holds: UInt64 = 100
    static let forbids: UInt64 = 200
    static let consistentRead: UInt64 = 0, write: UInt64 = 1, writeUnchanged: UInt64 = 2, resize: UInt64 = 3
}

extension FileBlockDevice {
    /// Takes the locks qemu takes for a guest disk it writes alone: it holds consistent-read,
    /// write and write-unchanged, and lets nobody else write or resize. From then on qemu refuses
    /// to write the image ("Failed to get "write" lock") or to read it as consistent without
    /// `-U`, while this device is open. Throws `DeviceError.heldByAnother` (the locks released)
    /// when another program holds write or resize, or forbids what this one needs.
    ///
    /// Invariant: the locks live exactly as long as the descriptor, like qemu's.
    public func lockAsSoleWriter() throws {
        let held = [ImageLockByte.consistentRead, ImageLockByte.write, ImageLockByte.writeUnchanged].map { ImageLockByte.holds + $0 }
        let forbidden = [ImageLockByte.write, ImageLockByte.resize].map { ImageLockByte.forbids + $0 }
        for byte in held + forbidden { try setShared(byte, true) }
        // Conflicts: another opener holding what this one forbids, or forbidding what it holds.
        let conflicting = [ImageLockByte.write, ImageLockByte.resize].map { ImageLockByte.holds + $0 }
            + [ImageLockByte.consistentRead, ImageLockByte.write, ImageLockByte.writeUnchanged].map { ImageLockByte.forbids + $0 }
        for byte in conflicting where try isHeldByAnother(byte) {
            for byte in held + forbidden { try? setShared(byte, false) }
            throw DeviceError.heldByAnother(device: name, holder: holderDescription())
        }
    }

    /// This device, after `lockAsSoleWriter()`: `try FileBlockDevice.open(path: p).lockedAsSoleWriter()`.
    public func lockedAsSoleWriter() throws -> FileBlockDevice {
        try lockAsSoleWriter()
        return self
    }

    private func setShared(_ byte: UInt64, _ locked: Bool) throws {
        let result = snapvol_ofd_share_byte(descriptor.rawValue, byte, locked ? 1 : 0)
        if result != 0 { throw DeviceError.system(operation: "fcntl(F_OFD_SETLK)", device: name, errno: Errno(rawValue: result)) }
    }

    private func isHeldByAnother(_ byte: UInt64) throws -> Bool {
        var held: Int32 = 0
        let result = snapvol_ofd_byte_held(descriptor.rawValue, byte, &held)
        if result != 0 { throw DeviceError.system(operation: "fcntl(F_OFD_GETLK)", device: name, errno: Errno(rawValue: result)) }
        return held != 0
    }

    private func holderDescription() -> String {
        let unknown = "another program (or this pool, under another path)"
        guard let info = try? descriptor.stat() else { return unknown }
        return LockHolder.ofdHolder(device: UInt64(info.deviceID.rawValue), inode: UInt64(info.inode.rawValue)) ?? unknown
    }
}
