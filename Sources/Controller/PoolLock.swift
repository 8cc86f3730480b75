import BlockDevices
import Foundation
import SystemPackage

/// Exclusive ownership of a pool: an `flock` on its lock file, held for the owner's lifetime.
/// A refused process names the holder from `/proc/locks` (pid and command line), so the lock
/// file is never written: a refused command leaves the pool byte-identical.
///
/// Invariant: at most one process holds the lock; it is released when the descriptor closes
/// (explicitly or when the process dies).
public final class PoolLock: Sendable {
    private let descriptor: FileDescriptor

    private init(descriptor: FileDescriptor) { self.descriptor = descriptor }

    deinit { try? descriptor.close() }

    /// Takes the lock or throws `ControllerError.locked` naming the holder.
    public static func acquire(_ location: PoolLocation, purpose: String) throws -> PoolLock {
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(FilePath(location.lockPath), .readWrite, options: [.create, .closeOnExec],
                                         permissions: [.ownerReadWrite])
        } catch {
            throw ControllerError.refused("cannot open \(location.lockPath): \(error)")
        }
        if !lockSoon(fd) {
            let holder = holderDescription(of: fd)
            try? fd.close()
            throw ControllerError.locked(pool: location.directory, holder: holder)
        }
        return PoolLock(descriptor: fd)
    }

    /// Tries the lock for up to `patience`. A lock this process just released can stay held
    /// for a moment: a child it forks (to run any command) holds copies of its descriptors
    /// until it execs, and the lock lives as long as any copy. A pool closed and opened again
    /// in one process while another thread spawned a process was refused that way ("in use
    /// by another process", with no holder left to name), in `ControllerModelTests`.
    private static func lockSoon(_ fd: FileDescriptor, patience: Duration = .milliseconds(250)) -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now + patience
        while flock(fd.rawValue, LOCK_EX | LOCK_NB) != 0 {
            guard errno == EWOULDBLOCK || errno == EINTR, clock.now < deadline else { return false }
            usleep(2_000)
        }
        return true
    }

    /// "process 1234 (snapvol serve)", from the FLOCK line of /proc/locks naming the file's inode.
    static func holderDescription(of fd: FileDescriptor) -> String {
        guard let info = try? fd.stat() else { return "another process" }
        return LockHolder.flockHolder(inode: UInt64(info.inode.rawValue)) ?? "another process"
    }
}
