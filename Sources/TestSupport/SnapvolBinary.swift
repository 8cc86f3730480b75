import Foundation

/// The built `snapvol` executable, run as a process by end-to-end tests.
public enum SnapvolBinary {
    /// `$SNAPVOL_BIN`, else `snapvol` next to the test bundle (the same build directory).
    public static var path: String {
        if let explicit = Environment.value("SNAPVOL_BIN") { return explicit }
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = directory.appendingPathComponent("snapvol").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            directory.deleteLastPathComponent()
        }
        return "snapvol"
    }

    /// Runs `snapvol <arguments>`.
    @discardableResult
    public static func run(_ arguments: [String], environment: [String: String]? = nil) throws -> Shell.Result {
        try Shell.run([path] + arguments, environment: environment)
    }
}

extension TestPool {
    /// A new pool holding a sparse origin `origin` (file `ORIGIN.img`) of `size` bytes with two
    /// runs of data, 1 MiB of 0x41 at 0 and 64 KiB of 0x42 at `second`; then a snapshot
    /// `snapshot` of it (file `SNAPSHOT.cow`, 64 KiB chunks); then `changed.length` bytes of 0x43
    /// written to the origin at `changed.offset`.
    public static func sparseOriginWithSnapshot(origin: String, snapshot: String, size: Int, second: Int,
                                                changed: (offset: Int, length: Int)) throws -> TestPool {
        let pool = try TestPool()
        try pool.ok("pool", "init")
        try pool.ok("origin", "add", origin, "--path", pool.file("\(origin).img"), "--size", "\(size)")
        try pool.ok("io", "write", origin, "0", "1M", "--pattern", "0x41")
        try pool.ok("io", "write", origin, "\(second)", "64K", "--pattern", "0x42")
        try pool.ok("snapshot", "create", snapshot, "--origin", origin, "--cow", pool.file("\(snapshot).cow"), "--chunk-size", "64K")
        try pool.ok("io", "write", origin, "\(changed.offset)", "\(changed.length)", "--pattern", "0x43")
        return pool
    }
}

/// A pool in a temp directory with helpers to run commands against it.
public final class TestPool: Sendable {
    public let dir: TemporaryDirectory
    public var path: String { dir.file("pool") }

    public init() throws {
        dir = try TemporaryDirectory(prefix: "snapvol-pool")
    }

    public func file(_ name: String) -> String { dir.file(name) }

    /// Runs a command with `--pool` appended.
    @discardableResult
    public func run(_ arguments: String...) throws -> Shell.Result { try run(arguments: arguments) }

    /// Runs a command with `--pool` appended, its arguments as an array.
    @discardableResult
    public func run(arguments: [String]) throws -> Shell.Result {
        try SnapvolBinary.run(arguments + ["--pool", path])
    }

    /// Runs a command that must succeed.
    @discardableResult
    public func ok(_ arguments: String...) throws -> Shell.Result { try ok(arguments: arguments) }

    /// Runs a command that must succeed, its arguments as an array.
    @discardableResult
    public func ok(arguments: [String]) throws -> Shell.Result {
        let result = try SnapvolBinary.run(arguments + ["--pool", path])
        guard result.status == 0 else {
            throw Shell.Failure(command: "snapvol " + arguments.joined(separator: " "), result: result)
        }
        return result
    }

    /// The parsed `status --json`.
    public func status() throws -> [String: Any] {
        let result = try ok("status", "--json")
        return try JSONSerialization.jsonObject(with: result.stdout) as! [String: Any]
    }

    /// The JSON object of snapshot `name` in `status --json`.
    public func snapshotStatus(_ name: String) throws -> [String: Any]? {
        let origins = try status()["origins"] as! [[String: Any]]
        for origin in origins {
            for snapshot in origin["snapshots"] as! [[String: Any]] where snapshot["name"] as? String == name { return snapshot }
        }
        return nil
    }
}

/// Contents of every regular file under `paths` (directories walked), to prove nothing changed.
public func fingerprint(_ paths: [String]) -> [String: Data] {
    var result: [String: Data] = [:]
    let manager = FileManager.default
    for path in paths {
        var isDirectory: ObjCBool = false
        guard manager.fileExists(atPath: path, isDirectory: &isDirectory) else { continue }
        if isDirectory.boolValue {
            for name in (try? manager.subpathsOfDirectory(atPath: path)) ?? [] {
                let full = "\(path)/\(name)"
                if let data = manager.contents(atPath: full) { result[full] = data }
            }
        } else if let data = manager.contents(atPath: path) {
            result[path] = data
        }
    }
    return result
}

/// Holds a pool's lock from another process for `seconds`, as a second owner would: one
/// process (`sh` taking util-linux `flock` on a descriptor it keeps, then becoming `sleep`), so
/// that terminating it frees the pool. Returned once the lock is held.
public final class PoolLockHolder: Sendable {
    private let process: Process

    public init(pool: String, seconds: Double = 30) throws {
        let lock = "\(pool)/pool.lock"
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "exec 9>>\"$0\" && flock 9 && exec sleep \(seconds)", lock]
        try process.run()
        let deadline = Date().addingTimeInterval(10)
        while try Shell.run(["flock", "--nonblock", "--conflict-exit-code", "99", lock, "true"]).status != 99, Date() < deadline {
            Thread.sleep(forTimeInterval: 0.02)
        }
    }

    public var processIdentifier: Int32 { process.processIdentifier }

    /// SIGKILL: the shell and its `sleep` inherit the test thread's signal mask from Foundation's
    /// `Process`, in which SIGTERM is blocked, so `terminate()` left them for their whole
    /// `seconds`.
    deinit {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}

extension TestPool {
    /// A fresh pool holding origin `vm` (an 8 MiB file) and one snapshot of it, `snapshot`, made
    /// with `options` (its COW is `<snapshot>.cow` in the pool's directory).
    public static func withVM(snapshot: String, _ options: String...) throws -> TestPool {
        let pool = try withOrigin("vm", size: "8M")
        try pool.ok(arguments: ["snapshot", "create", snapshot, "--origin", "vm", "--cow", pool.file("\(snapshot).cow")] + options)
        return pool
    }

    /// A fresh pool holding origin `disk` on a new loop device of `size` bytes (backed by
    /// `disk.backing`), which the caller detaches.
    public static func withLoopOrigin(size: UInt64) throws -> (TestPool, LoopDevice) {
        let pool = try TestPool()
        let loop = try LoopDevice(backingFile: pool.file("disk.backing"), size: size)
        do {
            try pool.ok("pool", "init")
            try pool.ok("origin", "add", "disk", "--path", loop.path)
        } catch {
            loop.detach()
            throw error
        }
        return (pool, loop)
    }

    /// Moves snapshot `name`'s recorded creation time `seconds` into the past, in the registry
    /// file, as days of cron would.
    public func backdate(_ name: String, by seconds: TimeInterval) throws {
        let path = file("pool/registry.json")
        guard var registry = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any],
              var origins = registry["origins"] as? [[String: Any]] else { throw CocoaError(.fileReadCorruptFile) }
        for (originIndex, origin) in origins.enumerated() {
            guard var snapshots = origin["snapshots"] as? [[String: Any]], let index = snapshots.firstIndex(where: { $0["name"] as? String == name }) else { continue }
            snapshots[index]["created"] = Date().addingTimeInterval(-seconds).formatted(.iso8601)
            origins[originIndex]["snapshots"] = snapshots
        }
        registry["origins"] = origins
        try JSONSerialization.data(withJSONObject: registry).write(to: URL(fileURLWithPath: path))
    }

    /// A fresh pool holding origin `name`, a new file `<name>.img` of `size`; with `pattern`, its
    /// first `written` bytes (all of it when nil) hold that byte.
    public static func withOrigin(_ name: String, size: String, pattern: String? = nil, written: String? = nil) throws -> TestPool {
        let pool = try TestPool()
        try pool.ok("pool", "init")
        try pool.ok("origin", "add", name, "--path", pool.file("\(name).img"), "--size", size)
        if let pattern { try pool.ok("io", "write", name, "0", written ?? size, "--pattern", pattern) }
        return pool
    }
}
