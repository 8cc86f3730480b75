import Foundation
import Testing
import TestSupport

/// A user who is not the pool's owner cannot drive it: not through the CLI (the pool directory
/// is 0700), not through the control socket, not through the NBD socket (both 0600). Run as
/// root, with the other user played by `nobody` through `setpriv`.
@Suite(.mayBlock, .enabled(if: Environment.canRun(needsRoot: true, commands: ["setpriv"])))
struct OtherUserTests {
    static let asNobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]

    @Test func anotherUserCannotDriveTheOwnersPool() throws {
        #expect(Environment.isRoot, "this test plays two users and needs root")
        let pool = try TestPool()
        try pool.ok("pool", "init")
        try pool.ok("origin", "add", "data", "--path", pool.file("data.img"), "--size", "1M")
        // The other user must reach the pool's parent, as on a shared /var/lib.
        chmod(pool.dir.path, 0o755)
        let server = try ServeProcess(pool: pool)
        defer { server.stop() }
        let before = fingerprint([pool.file("data.img")])
        for arguments in [["status"], ["io", "write", "data", "0", "4096", "--pattern", "1"],
                          ["snapshot", "create", "s", "--origin", "data", "--cow", "/tmp/nobody-s.cow"]] {
            let result = try Shell.run(Self.asNobody + [SnapvolBinary.path] + arguments + ["--pool", pool.path])
            #expect(result.status != 0, "\(arguments) must be refused for another user")
            #expect(result.stderr.split(separator: "\n").count == 1, "\(arguments): \(result.stderr)")
            #expect(result.stderr.lowercased().contains("permission"), "\(arguments): \(result.stderr)")
        }
        // Straight at the sockets, bypassing the CLI.
        for socket in ["control.sock", "nbd.sock"] {
            let probe = try Shell.run(Self.asNobody + ["nbdinfo", "nbd+unix:///data?socket=\(pool.path)/\(socket)"])
            #expect(probe.status != 0, "\(socket) must not accept another user")
        }
        #expect(fingerprint([pool.file("data.img")]) == before)
        #expect(!FileManager.default.fileExists(atPath: "/tmp/nobody-s.cow"))
    }

    /// A pool where the user may not create one: the system's reason, not Foundation's prose.
    @Test func aPoolInAnotherUsersDirectoryIsRefusedWithTheReason() throws {
        let dir = try TemporaryDirectory()
        chmod(dir.path, 0o755)
        let result = try Shell.run(Self.asNobody + [SnapvolBinary.path, "pool", "init", "--pool", dir.file("pool")])
        #expect(result.status == 1)
        #expect(result.stderr == "snapvol: error: cannot create pool directory \(dir.file("pool")): Permission denied\n")
    }
}
