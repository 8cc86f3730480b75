import Foundation

/// A loop device over a backing file, attached with `losetup -f --show` and detached by name
/// when the object goes away (or by `detach()`).
public final class LoopDevice: Sendable {
    public let path: String
    public let backingFile: String

    /// Creates a sparse backing file of `size` bytes and attaches it.
    public init(backingFile: String, size: UInt64) throws {
        self.backingFile = backingFile
        _ = FileManager.default.createFile(atPath: backingFile, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: backingFile))
        try handle.truncate(atOffset: size)
        try handle.close()
        let result = try Shell.check(["losetup", "-f", "--show", backingFile])
        path = result.text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    public func detach() { _ = try? Shell.run(["losetup", "-d", path]) }

    deinit { detach() }
}
