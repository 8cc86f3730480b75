import Foundation
import Synchronization

/// A loop device over a backing file, attached with `losetup -f --show` and detached by name
/// exactly once, by `detach()` or when the object goes away. Attaching is serialized within the
/// test process so that concurrent suites never race for the same free device.
public final class LoopDevice: Sendable {
    public let path: String
    public let backingFile: String
    private let attached = Mutex(true)
    private static let attachLock = Mutex(())

    /// Creates a sparse backing file of `size` bytes and attaches it.
    public init(backingFile: String, size: UInt64) throws {
        self.backingFile = backingFile
        _ = FileManager.default.createFile(atPath: backingFile, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: backingFile))
        try handle.truncate(atOffset: size)
        try handle.close()
        let result = try Self.attachLock.withLock { _ in try Shell.check(["losetup", "-f", "--show", backingFile]) }
        path = result.text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Detaches the device (once: a second call must not detach a device another test got since).
    public func detach() {
        let first = attached.withLock { value in defer { value = false }; return value }
        if first { _ = try? Shell.run(["losetup", "-d", path]) }
    }

    deinit { detach() }
}
