import Foundation

/// A small ext4 of a test's own, on a loop device over a file in `/dev/shm` (needs root): its
/// flushes reach memory only, so they never queue behind the I/O of the other tests running
/// at the same time, and its page cache behaves as on a disk (`posix_fadvise` drops pages).
/// Unmounted and detached by `remove()` or when the object goes away.
public final class QuietFileSystem: Sendable {
    public let path: String
    private let loop: LoopDevice

    public init(size: UInt64 = 64 << 20) throws {
        let name = "snapvol-quiet-\(UUID().uuidString.prefix(8))"
        loop = try LoopDevice(backingFile: "/dev/shm/\(name)", size: size)
        path = NSTemporaryDirectory() + "/" + name
        do {
            try Shell.check(["mkfs.ext4", "-q", "-F", loop.path])
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            try Shell.check(["mount", loop.path, path])
        } catch {
            remove()
            throw error
        }
    }

    public func file(_ name: String) -> String { "\(path)/\(name)" }

    public func remove() {
        _ = try? Shell.run(["umount", path])
        try? FileManager.default.removeItem(atPath: path)
        loop.detach()
        try? FileManager.default.removeItem(atPath: loop.backingFile)
    }

    deinit { remove() }
}
