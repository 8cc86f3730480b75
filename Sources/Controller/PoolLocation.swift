import Foundation

/// Where a pool lives and the files in it.
///
/// Invariant: `directory` is an absolute path; the registry and lock file are inside it.
public struct PoolLocation: Sendable, Equatable {
    public let directory: String

    public init(directory: String) {
        self.directory = URL(fileURLWithPath: directory).standardizedFileURL.path
    }

    /// `$SNAPVOL_POOL`, else `/var/lib/snapvol` for root, else `$XDG_DATA_HOME/snapvol`
    /// (or `~/.local/share/snapvol`).
    public static func defaultLocation(environment: [String: String] = ProcessInfo.processInfo.environment) -> PoolLocation {
        if let explicit = environment["SNAPVOL_POOL"], !explicit.isEmpty { return PoolLocation(directory: explicit) }
        if geteuid() == 0 { return PoolLocation(directory: "/var/lib/snapvol") }
        if let data = environment["XDG_DATA_HOME"], !data.isEmpty { return PoolLocation(directory: "\(data)/snapvol") }
        let home = environment["HOME"] ?? NSHomeDirectory()
        return PoolLocation(directory: "\(home)/.local/share/snapvol")
    }

    public var registryPath: String { "\(directory)/registry.json" }
    public var lockPath: String { "\(directory)/pool.lock" }
    public var controlSocketPath: String { "\(directory)/control.sock" }
    public var nbdSocketPath: String { "\(directory)/nbd.sock" }
    /// The event log (`EventLog`), rotated to `events.log.1`.
    public var eventsPath: String { "\(directory)/events.log" }

    public var exists: Bool { FileManager.default.fileExists(atPath: registryPath) }

    /// Throws `permissionDenied` when the pool directory exists but this user may not enter it
    /// or read its registry (another user's pool), instead of letting it look absent.
    public func requireAccess() throws {
        var info = stat()
        guard stat(directory, &info) == 0 else { return }
        if access(directory, R_OK | W_OK | X_OK) != 0 && errno == EACCES
            || access(registryPath, R_OK) != 0 && errno == EACCES {
            let owner = getpwuid(info.st_uid).map { String(cString: $0.pointee.pw_name) } ?? "uid \(info.st_uid)"
            throw ControllerError.permissionDenied(pool: directory, owner: owner, mode: String(info.st_mode & 0o777, radix: 8))
        }
    }
}
