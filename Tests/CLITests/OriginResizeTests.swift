import Foundation
import Testing
import TestSupport

/// `origin resize`: a file origin grows (sparse) or, forced, shrinks; a block device's new size
/// is taken once the device has grown; an origin with snapshots, or open by a client without
/// `--force`, is refused and left as it was.
@Suite(.mayBlock) struct OriginResizeTests {
    static func pool() throws -> TestPool { try TestPool.withOrigin("vm", size: "4M", pattern: "0x33") }

    static func size(_ path: String) throws -> UInt64 {
        try #require(try FileManager.default.attributesOfItem(atPath: path)[.size] as? UInt64)
    }

    @Test func aFileOriginGrowsKeepsItsDataAndTakesSnapshotsOfTheNewPart() throws {
        let pool = try Self.pool()
        #expect(try pool.ok("origin", "resize", "vm", "--size", "8M").text == "resized origin vm from 4 MiB to 8 MiB\n")
        #expect(try Self.size(pool.file("vm.img")) == 8 << 20)
        #expect(try pool.ok("io", "read", "vm", "0", "4M").stdout.allSatisfy { $0 == 0x33 })
        #expect(try pool.ok("io", "read", "vm", "4M", "4M").stdout.allSatisfy { $0 == 0 })
        #expect(try pool.ok("origin", "resize", "vm", "--size", "8M").text == "origin vm is already 8 MiB\n")
        try pool.ok("snapshot", "create", "grown", "--origin", "vm", "--cow", pool.file("grown.cow"))
        try pool.ok("io", "write", "vm", "6M", "1M", "--pattern", "0x44")
        #expect(try pool.ok("io", "read", "grown", "6M", "1M").stdout.allSatisfy { $0 == 0 }, "the new part is preserved too")
    }

    @Test func shrinkingNeedsForce() throws {
        let pool = try Self.pool()
        let refused = try pool.run("origin", "resize", "vm", "--size", "2M")
        #expect(refused.status == 1)
        #expect(refused.stderr == "snapvol: error: shrinking origin 'vm' from 4 MiB to 2 MiB discards the data past 2 MiB: add --force\n")
        #expect(try Self.size(pool.file("vm.img")) == 4 << 20)
        #expect(try pool.ok("origin", "resize", "vm", "--size", "2M", "--force").text == "resized origin vm from 4 MiB to 2 MiB\n")
        #expect(try Self.size(pool.file("vm.img")) == 2 << 20)
        #expect(try pool.ok("io", "read", "vm", "0", "2M").stdout.allSatisfy { $0 == 0x33 })
    }

    @Test func refusalsChangeNothing() throws {
        let pool = try Self.pool()
        try pool.ok("snapshot", "create", "snap", "--origin", "vm", "--cow", pool.file("snap.cow"))
        try pool.ok("origin", "add", "other", "--path", pool.file("other.img"), "--size", "1M")
        let cases: [([String], String)] = [
            (["vm", "--size", "8M"], "origin 'vm' has snapshots (snap): a snapshot keeps its origin's size, so delete or merge them first"),
            (["snap", "--size", "8M"], "'snap' is a snapshot: use 'snapshot extend' for its COW"),
            (["nope", "--size", "8M"], "no origin named 'nope' in this pool"),
            (["other", "--size", "1000"], "origin size 1000 must be a positive multiple of 512 bytes"),
        ]
        for (arguments, message) in cases {
            let result = try pool.run(arguments: ["origin", "resize"] + arguments)
            #expect(result.status == 1, "\(arguments)")
            #expect(result.stderr == "snapvol: error: \(message)\n", "\(arguments)")
        }
        #expect(try Self.size(pool.file("vm.img")) == 4 << 20)
        #expect(try Self.size(pool.file("other.img")) == 1 << 20)
    }

    /// Through a server: a client holding the origin refuses the resize until `--force`
    /// disconnects it; a new client then sees the new size.
    @Test(.enabled(if: Environment.canRun(commands: ["nbdinfo"])))
    func aServedOriginIsResizedForNewClients() throws {
        let pool = try Self.pool()
        let server = try ServeProcess(pool: pool)
        let (client, go) = try RawSocket.transmitting(server.socket, export: "vm")
        #expect(go.count == 86)
        let refused = try pool.run("origin", "resize", "vm", "--size", "8M")
        #expect(refused.status == 1)
        #expect(refused.stderr.hasPrefix("snapvol: error: volume 'vm' is in use by 1 NBD client"))
        #expect(try Shell.check(["nbdinfo", "--size", server.uri("vm")]).text == "\(4 << 20)\n")
        #expect(try pool.ok("origin", "resize", "vm", "--size", "8M", "--force").text == "resized origin vm from 4 MiB to 8 MiB\n")
        #expect(client.closedByPeer())
        #expect(try Shell.check(["nbdinfo", "--size", server.uri("vm")]).text == "\(8 << 20)\n")
        #expect(try Shell.check(["nbdinfo", "--size", server.uri("vm")]).status == 0)
        #expect(server.stop() == 0)
    }
}

/// A loop device grown under a running server: `origin resize` without `--size` takes its new
/// size; with `--size`, a block device is refused.
@Suite(.mayBlock, .serialized, .enabled(if: Environment.canRun(needsRoot: true, commands: ["losetup", "nbdinfo"])))
struct BlockOriginResizeTests {
    @Test func aGrownLoopDeviceIsTakenAtItsNewSize() throws {
        let (pool, loop) = try TestPool.withLoopOrigin(size: 4 << 20)
        defer { loop.detach() }
        let server = try ServeProcess(pool: pool)
        let refused = try pool.run("origin", "resize", "disk", "--size", "8M")
        #expect(refused.status == 1)
        #expect(refused.stderr.hasPrefix("snapvol: error: origin 'disk' is a block device: resize it with its own tools"))
        #expect(try pool.ok("origin", "resize", "disk").text == "origin disk is already 4 MiB\n")
        try Shell.check(["truncate", "-s", "8M", loop.backingFile])
        try Shell.check(["losetup", "--set-capacity", loop.path])
        #expect(try pool.ok("origin", "resize", "disk").text == "resized origin disk from 4 MiB to 8 MiB\n")
        #expect(try Shell.check(["nbdinfo", "--size", server.uri("disk")]).text == "\(8 << 20)\n")
        #expect(server.stop() == 0)
    }
}
