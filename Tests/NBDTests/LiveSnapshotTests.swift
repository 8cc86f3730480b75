import Foundation
import Testing
import TestSupport

/// Snapshots created, read and deleted through `snapvol serve` while real clients (qemu-io, one
/// per origin) write two origins, one request at a time; some snapshots are consistent groups of
/// both. A snapshot is a point in its origin's stream: it must hold exactly the origin's image
/// after some prefix of the client's writes (never half a write), no shorter than the writes
/// acknowledged before its creation began and no longer than those issued by its end, a
/// snapshot created later a prefix at least as long, and it must read the same every time:
/// while the clients write, after they stop, after `serve` restarts from disk, and after
/// `serve` is killed mid-stream.
@Suite(.mayBlock, .serialized, .enabled(if: Environment.canRun(commands: ["nbdcopy", "qemu-io", "stdbuf"])))
struct LiveSnapshotTests {
    static let size = 8 << 20
    static let origins = ["a", "b"]

    @Test(arguments: [false, true])
    func everySnapshotIsAPrefixOfItsOriginsWrites(killingTheServer: Bool) throws {
        let pool = try TestPool()
        try pool.ok("pool", "init")
        for origin in Self.origins {
            try pool.ok("origin", "add", origin, "--path", pool.file("\(origin).img"), "--size", "8M")
        }
        try Self.snapshotWhileWriting(pool, killingTheServer: killingTheServer)
    }

    /// The same with the origins on loop devices (written through the block device's page
    /// cache, flushed by `fsync` of the device), `serve` killed mid-stream.
    @Test(.enabled(if: Environment.canRun(needsRoot: true, commands: ["losetup"])))
    func onBlockDeviceOriginsToo() throws {
        let pool = try TestPool()
        try pool.ok("pool", "init")
        let loops = try Self.origins.map { try LoopDevice(backingFile: pool.file("\($0).backing"), size: UInt64(Self.size)) }
        defer { for loop in loops { loop.detach() } }
        for (origin, loop) in zip(Self.origins, loops) { try pool.ok("origin", "add", origin, "--path", loop.path) }
        try Self.snapshotWhileWriting(pool, killingTheServer: true)
    }

    /// Two clients write the pool's origins `a` and `b` while snapshots are created, read and
    /// deleted; then every snapshot is checked, after the writes and after `serve` restarted
    /// (or was SIGKILLed after the fourth creation and started again).
    static func snapshotWhileWriting(_ pool: TestPool, killingTheServer: Bool) throws {
        var generator = SeededGenerator.fromEnvironment()
        let seed = generator.seed
        let count = Int(Environment.value("SNAPVOL_LIVE_WRITES") ?? "") ?? 2000
        var server = try ServeProcess(pool: pool)
        var live = try LiveSnapshots(pool: pool, volumes: Self.origins.map { origin in
            let stream = WriteStream(count: count, size: Self.size, using: &generator)
            return try LiveVolume(origin: origin, stream: stream, writer: QemuIOStream(stream, uri: server.uri(origin), log: pool.file("\(origin).log")))
        })

        var chunkSizes = ["4K", "16K", "64K"].shuffled(using: &generator)
        while live.volumes.allSatisfy(\.writer.isRunning) && live.created < 12 {
            let chunk = chunkSizes.removeFirst()
            chunkSizes.append(chunk)
            try live.create(of: Bool.random(using: &generator) ? live.volumes : [live.volumes.randomElement(using: &generator)!], chunkSize: chunk)
            if Bool.random(using: &generator), let name = live.names.randomElement(using: &generator) {
                try live.read(name, server: server)
            }
            if live.names.count > 6, let oldest = live.names.first { try live.delete(oldest) }
            try pool.ok("status", "--json")
            if killingTheServer && live.created == 4 {
                server.signal(SIGKILL)
                server.waitForExit()
                break
            }
        }
        for volume in live.volumes {
            let status = volume.writer.waitForExit()
            if !killingTheServer { #expect(status == 0, "qemu-io on \(volume.origin): \(volume.writer.output)") }
        }

        if !killingTheServer {
            for volume in live.volumes {
                let image = try NBDClientTests.copy(server.uri(volume.origin), to: pool.file("\(volume.origin).read"))
                #expect(volume.stream.prefixes(of: image).last == count, "\(volume.origin) lacks writes; seed \(seed)")
            }
            try live.expectPrefixes(server: server, seed: seed, when: "after the writes")
        }
        server.stop()
        server = try ServeProcess(pool: pool)
        try live.expectPrefixes(server: server, seed: seed, when: killingTheServer ? "after serve was killed" : "after serve restarted")
        #expect(live.takenMidStream >= 3,
                "only \(live.takenMidStream) snapshots fell inside their streams: the writers were too quick to judge; seed \(seed)")
        server.stop()
        for name in live.names {
            let check = try SnapvolBinary.run(["check", pool.file("\(name).cow")])
            #expect(check.status == 0, "check \(name): \(check.text)\(check.stderr); seed \(seed)")
        }
    }

    /// A snapshot merged while the client writes its origin: the origin ends as the snapshot
    /// with the writes from the merge's start on (one instant, between the writes acknowledged
    /// before the command and those issued after it returned), and a later snapshot of the
    /// same origin, which the merge's writes must preserve, still holds its prefix.
    @Test func aMergeUnderWritesRollsBackAndKeepsLaterWritesAndSnapshots() throws {
        var generator = SeededGenerator.fromEnvironment()
        let seed = generator.seed
        let pool = try TestPool()
        try pool.ok("pool", "init")
        try pool.ok("origin", "add", "a", "--path", pool.file("a.img"), "--size", "8M")
        let server = try ServeProcess(pool: pool)
        let stream = WriteStream(count: Int(Environment.value("SNAPVOL_LIVE_WRITES") ?? "") ?? 2000 * 4, size: Self.size, using: &generator)
        let volume = try LiveVolume(origin: "a", stream: stream, writer: QemuIOStream(stream, uri: server.uri("a"), log: pool.file("a.log")))
        var live = LiveSnapshots(pool: pool, volumes: [volume])

        // 4K chunks and 1,500 writes before the merge: enough exceptions that the merge runs
        // while the client writes on.
        try volume.writer.wait(forAcknowledged: 300)
        try live.create(of: [volume], chunkSize: "4K")
        let merged = live.names[0]
        let base = try NBDClientTests.copy(server.uri(merged), to: pool.file("merged.read"))
        try volume.writer.wait(forAcknowledged: volume.writer.acknowledged + 1000)
        try live.create(of: [volume], chunkSize: "64K")
        try volume.writer.wait(forAcknowledged: volume.writer.acknowledged + 500)
        let before = volume.writer.acknowledged
        try pool.ok("snapshot", "merge", merged, "--no-progress")
        let after = volume.writer.acknowledged + 1
        live.forget(merged)
        #expect(volume.writer.waitForExit() == 0, "qemu-io: \(volume.writer.output)")
        #expect(after < stream.writes.count, "the writer ended before the merge did: nothing judged; seed \(seed)")

        #expect(!stream.prefixes(of: base, upTo: before).isEmpty, "\(merged) is no prefix of the writes; seed \(seed)")
        let origin = try NBDClientTests.copy(server.uri("a"), to: pool.file("a.read"))
        if let problem = stream.mismatch(of: origin, mergedOnto: base, startingWithin: before..<after) {
            Issue.record("the origin after the merge: \(problem); seed \(seed)")
        }
        try live.expectPrefixes(server: server, seed: seed, when: "after a merge of another snapshot")
        #expect(server.stop() == 0)
    }
}
