import Foundation

/// A directory under the system temp dir, removed when the object goes away.
public final class TemporaryDirectory: Sendable {
    public let path: String

    public init(prefix: String = "snapvol-test") throws {
        let base = FileManager.default.temporaryDirectory.path
        path = "\(base)/\(prefix)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    public func file(_ name: String) -> String { "\(path)/\(name)" }
}
