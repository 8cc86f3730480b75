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
                               mentioning: message)
        try pool.ok("snapshot", "create", "s2", "--origin", "data", "--cow", pool.file("held.cow"), "--force")
        #expect(try pool.snapshotStatus("s2")?["exceptions"] as? Int == 0)
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
