import Foundation
import SystemPackage

/// What a regular file's metadata says of its contents: its modification time and size.
///
/// Invariant: every write, truncation or hole punched changes it (the kernel sets the
/// modification time); reads, permission and owner changes do not. `touch` and tools that
/// restore times can change it without a write, so a changed stamp means "may have been
/// written", never "was written".
public struct FileStamp: Codable, Equatable, Sendable {
    public var modifiedSeconds: Int64
    public var modifiedNanoseconds: Int64
    public var size: UInt64

    enum CodingKeys: String, CodingKey {
        case size
        case modifiedSeconds = "modified_seconds", modifiedNanoseconds = "modified_nanoseconds"
    }

    public init(modifiedSeconds: Int64, modifiedNanoseconds: Int64, size: UInt64) {
        self.modifiedSeconds = modifiedSeconds
        self.modifiedNanoseconds = modifiedNanoseconds
        self.size = size
    }

    /// The modification time.
    public var modified: Date {
        Date(timeIntervalSince1970: TimeInterval(modifiedSeconds) + TimeInterval(modifiedNanoseconds) / 1e9)
    }
}

extension FileBlockDevice {
    /// The file's stamp now; nil for a block device, whose node's times no write changes.
    public func stamp() throws -> FileStamp? {
        guard kind == .regularFile else { return nil }
        let info = try FileBlockDevice.system("fstat", name) { try descriptor.stat() }
        return FileStamp(modifiedSeconds: Int64(info.st_mtim.tv_sec), modifiedNanoseconds: Int64(info.st_mtim.tv_nsec),
                         size: UInt64(info.size))
    }
}
