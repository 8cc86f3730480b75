import Foundation
import Testing
import TestSupport

/// Every refusal: one clear line on stderr, a non-zero exit, and the pool and the devices
/// byte-identical afterwards.
@Suite(.mayBlock) struct RefusalTests {
    /// A pool with an origin `data` (1 MiB file) and a snapshot `snap`.
    static func pool() throws -> TestPool {
        let pool = try TestPool.withOrigin("data", size: "1M", pattern: "7", written: "64K")
        try pool.ok("snapshot", "create", "snap", "--origin", "data", "--cow", pool.file("snap.cow"), "--chunk-size", "4K")
        try pool.ok("io", "write", "data", "0", "8K", "--pattern", "9")
        return pool
    }

    static func expectRefused(_ pool: TestPool, _ arguments: [String], mentioning: String,
                              sourceLocation: SourceLocation = #_sourceLocation) throws {
        let before = fingerprint([pool.dir.path])
        let result = try SnapvolBinary.run(arguments + ["--pool", pool.path])
        #expect(result.status != 0, "\(arguments) should fail", sourceLocation: sourceLocation)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1, "one line on stderr, got: \(result.stderr)", sourceLocation: sourceLocation)
        #expect(result.stderr.contains(mentioning), "stderr should name \(mentioning): \(result.stderr)", sourceLocation: sourceLocation)
        #expect(fingerprint([pool.dir.path]) == before, "\(arguments) changed files", sourceLocation: sourceLocation)
    }

    @Test func unknownVolume() throws {
        let pool = try Self.pool()
        try Self.expectRefused(pool, ["io", "read", "nope", "0", "1"], mentioning: "nope")
        try Self.expectRefused(pool, ["snapshot", "delete", "nope"], mentioning: "nope")
        try Self.expectRefused(pool, ["snapshot", "create", "s2", "--origin", "nope", "--cow", pool.file("x.cow")], mentioning: "nope")
        try Self.expectRefused(pool, ["status", "nope"], mentioning: "nope")
    }

    @Test func duplicateName() throws {
        let pool = try Self.pool()
        try Self.expectRefused(pool, ["snapshot", "create", "snap", "--origin", "data", "--cow", pool.file("x.cow")], mentioning: "'snap'")
        try Self.expectRefused(pool, ["origin", "add", "snap", "--path", pool.file("y.img"), "--size", "1M"], mentioning: "'snap'")
        try Self.expectRefused(pool, ["origin", "add", "bad/name", "--path", pool.file("y.img"), "--size", "1M"], mentioning: "bad/name")
    }

    @Test func cowPathClashes() throws {
        let pool = try Self.pool()
        try Self.expectRefused(pool, ["snapshot", "create", "s2", "--origin", "data", "--cow", pool.file("data.img")], mentioning: "data.img")
        try Self.expectRefused(pool, ["snapshot", "create", "s2", "--origin", "data", "--cow", pool.file("snap.cow")], mentioning: "snap.cow")
        try Self.expectRefused(pool, ["origin", "add", "o2", "--path", pool.file("snap.cow")], mentioning: "snap.cow")
    }

    /// A COW path that already holds a snapshot store is not overwritten without `--force`, for
    /// a snapshot and for a remap volume's spare; with `--force` the snapshot takes it.
    @Test func cowHoldingAStoreNeedsForce() throws {
        let pool = try Self.pool()
        try FileManager.default.copyItem(atPath: pool.file("snap.cow"), toPath: pool.file("held.cow"))
        try Data(count: 1 << 20).write(to: URL(fileURLWithPath: pool.file("disk.img")))
        let message = "\(pool.file("held.cow")) already holds a snapshot COW store: use 'snapshot attach' to adopt it, or --force to overwrite it"
        try Self.expectRefused(pool, ["snapshot", "create", "s2", "--origin", "data", "--cow", pool.file("held.cow")], mentioning: message)
        try Self.expectRefused(pool, ["remap", "create", "r", "--device", pool.file("disk.img"), "--spare", pool.file("held.cow")],
                               mentioning: "\(pool.file("held.cow")) holds an exception store (a snapshot's COW or a spare area), which formatting it as a spare area would destroy")
        try pool.ok("snapshot", "create", "s2", "--origin", "data", "--cow", pool.file("held.cow"), "--force")
        #expect(try pool.snapshotStatus("s2")?["exceptions"] as? Int == 0)
    }

    /// An existing COW or spare path is formatted only when nothing would be lost, as mkfs
    /// looks first: written data or a disk image is refused without --force, naming what it
    /// holds; a sparse or preallocated file holds nothing and is taken.
    @Test func aCowPathHoldingDataNeedsForce() throws {
        let pool = try Self.pool()
        try Self.file(pool.file("written.cow"), [UInt8](repeating: 0x5A, count: 64 << 10), size: 1 << 20)
        try Self.file(pool.file("vm.qcow2"), [0x51, 0x46, 0x49, 0xFB, 0, 0, 0, 3], size: 1 << 20)
        try Data(count: 1 << 20).write(to: URL(fileURLWithPath: pool.file("disk.img")))
        let create = ["snapshot", "create", "s2", "--origin", "data", "--chunk-size", "4K", "--cow"]
        try Self.expectRefused(pool, create + [pool.file("written.cow")], mentioning: "\(pool.file("written.cow")) holds 64 KiB of written data, "
            + "which formatting it as a snapshot's COW would destroy: give a path that does not exist yet (snapvol creates the file), or add --force to overwrite it")
        try Self.expectRefused(pool, create + [pool.file("vm.qcow2")], mentioning: "holds a qcow2 disk image")
        try Self.expectRefused(pool, ["remap", "create", "r", "--device", pool.file("disk.img"), "--spare", pool.file("written.cow")],
                               mentioning: "holds 64 KiB of written data, which formatting it as a spare area would destroy")

        try Self.file(pool.file("sparse.cow"), [], size: 1 << 20)
        try Shell.check(["fallocate", "-l", "1M", pool.file("preallocated.cow")])
        try pool.ok("snapshot", "create", "sparse", "--origin", "data", "--cow", pool.file("sparse.cow"), "--chunk-size", "4K")
        try pool.ok("snapshot", "create", "prealloc", "--origin", "data", "--cow", pool.file("preallocated.cow"), "--chunk-size", "4K")
        try pool.ok("snapshot", "create", "forced", "--origin", "data", "--cow", pool.file("written.cow"), "--chunk-size", "4K", "--force")
        try pool.ok("io", "write", "data", "0", "4K", "--pattern", "0x33")
        for name in ["sparse", "prealloc", "forced"] { #expect(try pool.snapshotStatus(name)?["exceptions"] as? Int == 1, "\(name)") }
    }

    @Test(.enabled(if: Environment.canRun(commands: ["mkfs.ext4"])))
    func aCowPathHoldingAFilesystemNeedsForce() throws {
        let pool = try Self.pool()
        try Self.file(pool.file("fs.img"), [], size: 4 << 20)
        try Shell.check(["mkfs.ext4", "-q", "-L", "keep", pool.file("fs.img")])
        try Self.expectRefused(pool, ["snapshot", "create", "s2", "--origin", "data", "--cow", pool.file("fs.img")],
                               mentioning: "\(pool.file("fs.img")) holds an ext4 filesystem labelled 'keep', which formatting it as a snapshot's COW would destroy")
        // `check` of it says what the kernel would destroy by taking it as a new COW.
        let check = try SnapvolBinary.run(["check", pool.file("fs.img")])
        #expect(check.text.contains("problem: no store yet (magic 0): the kernel would initialise it, destroying what it holds: an ext4 filesystem labelled 'keep'\n"),
                "\(check.text)")
    }

    /// A block device is taken as free unless it holds a known format (a new disk or logical
    /// volume holds whatever was there before), and the advice fits a device.
    @Test(.enabled(if: Environment.canRun(needsRoot: true, commands: ["losetup", "mkswap"])))
    func aCowDeviceHoldingAKnownFormatNeedsForce() throws {
        let pool = try Self.pool()
        let swap = try LoopDevice(backingFile: pool.file("swap.backing"), size: 4 << 20)
        defer { swap.detach() }
        let blank = try LoopDevice(backingFile: pool.file("blank.backing"), size: 4 << 20)
        defer { blank.detach() }
        try Shell.check(["mkswap", "-q", swap.path])
        try Shell.check(["dd", "if=/dev/urandom", "of=\(blank.path)", "bs=64K", "count=4", "oflag=direct", "status=none"])
        try Self.expectRefused(pool, ["snapshot", "create", "s2", "--origin", "data", "--cow", swap.path],
                               mentioning: "\(swap.path) holds a swap signature, which formatting it as a snapshot's COW would destroy: "
                                   + "check it is the device you meant and wipe it (wipefs -a), or add --force to overwrite it")
        try pool.ok("snapshot", "create", "s2", "--origin", "data", "--cow", blank.path, "--chunk-size", "4K")
        try pool.ok("snapshot", "create", "s3", "--origin", "data", "--cow", swap.path, "--chunk-size", "4K", "--force")
        try pool.ok("snapshot", "delete", "s2", "s3")
    }

    /// A COW registered as an origin would have its store overwritten by the origin's writes.
    @Test func anExceptionStoreIsNoOriginWithoutForce() throws {
        let pool = try Self.pool()
        try FileManager.default.copyItem(atPath: pool.file("snap.cow"), toPath: pool.file("copy.cow"))
        try Self.expectRefused(pool, ["origin", "add", "o2", "--path", pool.file("copy.cow")],
                               mentioning: "\(pool.file("copy.cow")) holds an exception store (a snapshot's COW or a spare area), which writes to it as an origin would destroy")
        try pool.ok("origin", "add", "o2", "--path", pool.file("copy.cow"), "--force")
    }

    /// Writes `bytes` at the start of a new file of `size` bytes (sparse past them).
    static func file(_ path: String, _ bytes: [UInt8], size: UInt64) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.truncate(atOffset: size)
        try handle.close()
    }

    @Test func cowTooSmall() throws {
        let pool = try Self.pool()
        try Self.expectRefused(pool, ["snapshot", "create", "s2", "--origin", "data", "--cow", pool.file("small.cow"),
                                      "--cow-size", "8K", "--chunk-size", "4K"], mentioning: "3 chunks")
        #expect(!FileManager.default.fileExists(atPath: pool.file("small.cow")))
    }

    @Test func badChunkSizes() throws {
        let pool = try Self.pool()
        for chunk in ["3K", "2K", "2G", "12288"] {
            try Self.expectRefused(pool, ["snapshot", "create", "s2", "--origin", "data", "--cow", pool.file("c.cow"),
                                          "--chunk-size", chunk], mentioning: chunk)
        }
    }

    @Test func offsetsPastTheEnd() throws {
        let pool = try Self.pool()
        try Self.expectRefused(pool, ["io", "write", "data", "1M", "1", "--pattern", "1"], mentioning: "past the end")
        try Self.expectRefused(pool, ["io", "read", "snap", "1048000", "1000"], mentioning: "past the end")
    }

    @Test func malformedSizes() throws {
        let pool = try Self.pool()
        try Self.expectRefused(pool, ["io", "read", "data", "12Q", "1"], mentioning: "12Q")
        try Self.expectRefused(pool, ["io", "read", "data", "0", "5x"], mentioning: "5x")
        try Self.expectRefused(pool, ["io", "read", "data", "0"], mentioning: "length")
        try Self.expectRefused(pool, ["origin", "add", "o2", "--path", pool.file("o2.img"), "--size", "1.5.5M"], mentioning: "1.5.5M")
        try Self.expectRefused(pool, ["snapshot", "extend", "snap", "--cow-size", "99999999999999999999"], mentioning: "99999999999999999999")
    }

    @Test func existingStoreNeedsForce() throws {
        let pool = try Self.pool()
        try pool.ok("snapshot", "delete", "snap")
        let source = try TestPool()
        try source.ok("pool", "init")
        try source.ok("origin", "add", "o", "--path", source.file("o.img"), "--size", "1M")
        try source.ok("snapshot", "create", "s", "--origin", "o", "--cow", source.file("s.cow"))
        try FileManager.default.copyItem(atPath: source.file("s.cow"), toPath: pool.file("kept.cow"))
        try Self.expectRefused(pool, ["snapshot", "create", "s2", "--origin", "data", "--cow", pool.file("kept.cow")], mentioning: "--force")
    }

    @Test func originWithSnapshotsCannotBeRemoved() throws {
        let pool = try Self.pool()
        try Self.expectRefused(pool, ["origin", "remove", "data"], mentioning: "snap")
    }

    @Test func poolLockedByAnotherProcess() throws {
        let pool = try Self.pool()
        let holder = try PoolLockHolder(pool: pool.path)
        defer { withExtendedLifetime(holder) {} }
        try Self.expectRefused(pool, ["status", "--wait", "0"], mentioning: "in use by")
        let result = try pool.run("io", "read", "data", "0", "1", "--wait", "0.2")
        #expect(result.status == 1)
        #expect(result.stderr.contains("still in use by"))
    }

    @Test func corruptRegistry() throws {
        let pool = try Self.pool()
        try Data("{ not json".utf8).write(to: URL(fileURLWithPath: "\(pool.path)/registry.json"))
        try Self.expectRefused(pool, ["status"], mentioning: "registry.json")
        try Data(#"{"version": 1, "origins": [{"name": "a", "path": "/x", "snapshots": [{"name": "a", "cow_path": "/y", "chunk_size": 4096}]}]}"#.utf8)
            .write(to: URL(fileURLWithPath: "\(pool.path)/registry.json"))
        try Self.expectRefused(pool, ["status"], mentioning: "appears twice")
    }

    @Test func noPoolAndExistingPool() throws {
        let pool = try TestPool()
        try Self.expectRefused(pool, ["status"], mentioning: "pool init")
        try pool.ok("pool", "init")
        try Self.expectRefused(pool, ["pool", "init"], mentioning: "already exists")
    }

    @Test func transientNeedsAServer() throws {
        let pool = try Self.pool()
        try Self.expectRefused(pool, ["snapshot", "create", "t", "--origin", "data", "--cow", pool.file("t.cow"), "--transient"],
                               mentioning: "transient")
    }

    @Test func checkExitCodes() throws {
        let pool = try Self.pool()
        #expect(try SnapvolBinary.run(["check", pool.file("snap.cow")]).status == 0)
        var bytes = [UInt8](FileManager.default.contents(atPath: pool.file("snap.cow"))!)
        bytes[4096 + 8] = 1   // first record's new chunk -> 1, the metadata area itself
        for i in 4096 + 9..<4096 + 16 { bytes[i] = 0 }
        try Data(bytes).write(to: URL(fileURLWithPath: pool.file("bad.cow")))
        let bad = try SnapvolBinary.run(["check", pool.file("bad.cow")])
        #expect(bad.status == 1)
        #expect(bad.text.contains("metadata"))
        #expect(try SnapvolBinary.run(["check", pool.file("missing.cow")]).status == 2)
    }
}
