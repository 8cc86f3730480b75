import Foundation
@testable import NBDServer
import Testing
import TestSupport

/// `snapvol serve` with real NBD clients from Debian packages (libnbd-bin, qemu-utils):
/// always in CI.
@Suite(.mayBlock, .serialized, .enabled(if: Environment.canRun(commands: ["nbdcopy", "nbdinfo", "qemu-io"])))
struct NBDClientTests {
    /// A pool with a 32 MiB origin `data` full of 0x11 and a snapshot `snap`.
    static func pool() throws -> TestPool {
        let pool = try TestPool()
        try pool.ok("pool", "init")
        try pool.ok("origin", "add", "data", "--path", pool.file("data.img"), "--size", "32M")
        try pool.ok("io", "write", "data", "0", "32M", "--pattern", "0x11")
        try pool.ok("snapshot", "create", "snap", "--origin", "data", "--cow", pool.file("snap.cow"), "--cow-size", "40M")
        return pool
    }

    @discardableResult
    static func qemuIO(_ uri: String, _ commands: [String]) throws -> Shell.Result {
        try Shell.check(["qemu-io", "-f", "raw"] + commands.flatMap { ["-c", $0] } + [uri])
    }

    static func copy(_ uri: String, to path: String) throws -> [UInt8] {
        try Shell.check(["nbdcopy", uri, path])
        return [UInt8](FileManager.default.contents(atPath: path)!)
    }

    @Test func qemuWritesNbdcopyDumpsAndNbdinfoLists() throws {
        let pool = try Self.pool()
        let server = try ServeProcess(pool: pool)
        try Self.qemuIO(server.uri("data"), ["write -P 0x22 1M 4M", "write -P 0x33 20M 64k", "flush"])
        let snapshot = try Self.copy(server.uri("snap"), to: pool.file("snap.img"))
        #expect(sameBytes(snapshot, [UInt8](repeating: 0x11, count: 32 << 20)))
        var expected = [UInt8](repeating: 0x11, count: 32 << 20)
        expected.replaceSubrange((1 << 20)..<(5 << 20), with: repeatElement(0x22, count: 4 << 20))
        expected.replaceSubrange((20 << 20)..<((20 << 20) + 65536), with: repeatElement(0x33, count: 65536))
        #expect(sameBytes(try Self.copy(server.uri("data"), to: pool.file("data.copy")), expected))
        let list = try Shell.check(["nbdinfo", "--list", "nbd+unix:///?socket=\(server.socket)"]).text
        #expect(list.contains("export=\"data\"") && list.contains("export=\"snap\""))
        #expect(list.contains("33554432"))
        // What each export is: in the list (NBD_REP_SERVER) and when one is asked for (NBD_INFO_DESCRIPTION).
        #expect(list.contains("description: snapvol origin on \(pool.file("data.img"))"))
        let snapshotLine = "description: snapvol snapshot of data, COW \(pool.file("snap.cow")), 16 KiB chunks"
        #expect(list.contains(snapshotLine))
        #expect(try Shell.check(["nbdinfo", server.uri("snap")]).text.contains(snapshotLine))
        #expect(server.stop() == 0)
        // After a clean shutdown the lock is free and the figures are on disk.
        #expect(try pool.snapshotStatus("snap")?["exceptions"] as? Int == 256 + 4)   // 16 KiB chunks
    }

    /// Many requests in flight at once (qemu-io aio), then the snapshot still verifies.
    @Test func concurrentRandomWritesKeepTheSnapshot() throws {
        var generator = SeededGenerator.fromEnvironment()
        let pool = try Self.pool()
        let server = try ServeProcess(pool: pool)
        var expected = [UInt8](repeating: 0x11, count: 32 << 20)
        var commands: [String] = []
        for region in 0..<64 {   // one write per 512 KiB region, so the final image is exact
            let length = Int.random(in: 1...256, using: &generator) * 512
            let offset = region * (512 << 10) + Int.random(in: 0...((512 << 10) - length) / 512, using: &generator) * 512
            let byte = UInt8.random(in: 0x20...0xfe, using: &generator)
            commands.append("aio_write -P \(byte) \(offset) \(length)")
            expected.replaceSubrange(offset..<offset + length, with: repeatElement(byte, count: length))
        }
        try Self.qemuIO(server.uri("data"), commands + ["aio_flush"])
        let snapshot = try Self.copy(server.uri("snap"), to: pool.file("snap.img"))
        #expect(sameBytes(snapshot, [UInt8](repeating: 0x11, count: 32 << 20)), "seed \(generator.seed)")
        #expect(sameBytes(try Self.copy(server.uri("data"), to: pool.file("data.img.copy")), expected), "seed \(generator.seed)")
        server.stop()
        let check = try SnapvolBinary.run(["check", pool.file("snap.cow")])
        #expect(check.status == 0)
    }

    @Test func readOnlyExportsRefuseWrites() throws {
        let pool = try Self.pool()
        let server = try ServeProcess(pool: pool, extra: ["--read-only"])
        let result = try Shell.run(["qemu-io", "-f", "raw", "-c", "write -P 0x44 0 4k", server.uri("data")])
        #expect(result.status != 0 || result.text.contains("failed") || result.stderr.contains("ermission") || result.stderr.contains("read-only"))
        #expect(sameBytes(try Self.copy(server.uri("data"), to: pool.file("d.img")), [UInt8](repeating: 0x11, count: 32 << 20)))
        server.stop()
    }

    /// `--read-only-snapshots`: a backup reads snapshots that nothing can change by mistake,
    /// while the origins stay writable.
    @Test func readOnlySnapshotsLeaveOriginsWritable() throws {
        let pool = try Self.pool()
        let server = try ServeProcess(pool: pool, extra: ["--read-only-snapshots"])
        #expect(try Shell.check(["nbdinfo", server.uri("snap")]).text.contains("is_read_only: true"))
        #expect(try Shell.check(["nbdinfo", server.uri("data")]).text.contains("is_read_only: false"))
        let refused = try Shell.run(["qemu-io", "-f", "raw", "-c", "write -P 0x44 0 4k", server.uri("snap")])
        #expect(refused.status != 0 || refused.text.contains("failed") || refused.stderr.contains("ermission") || refused.stderr.contains("read-only"))
        try Self.qemuIO(server.uri("data"), ["write -P 0x55 0 4k", "flush"])
        #expect(server.stop() == 0)
        #expect(try pool.ok("io", "read", "snap", "0", "4K").stdout == Data(repeating: 0x11, count: 4096))
        #expect(try pool.ok("io", "read", "data", "0", "4K").stdout == Data(repeating: 0x55, count: 4096))
    }

    /// Garbage, truncated handshakes, bad magic, out-of-range requests, requests after DISC:
    /// the server answers or hangs up, never crashes, and other clients are unaffected.
    @Test func malformedClientsDoNotHurtTheServer() throws {
        var generator = SeededGenerator.fromEnvironment()
        let pool = try Self.pool()
        let server = try ServeProcess(pool: pool)
        for _ in 0..<20 {
            let junk = try RawSocket(path: server.socket)
            _ = junk.receive(18)
            junk.send((0..<Int.random(in: 1...200, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) })
        }
        let truncated = try RawSocket(path: server.socket)
        #expect(truncated.receive(18).count == 18)
        truncated.send([0, 0])
        let badMagic = try RawSocket(path: server.socket)
        _ = badMagic.receive(18)
        badMagic.send(bigEndian(UInt32(3)) + bigEndian(UInt64(0xDEAD_BEEF)) + bigEndian(UInt32(7)) + bigEndian(UInt32(0)))
        #expect(badMagic.closedByPeer())

        let (client, optionReplies) = try RawSocket.transmitting(server.socket, export: "data")
        #expect(optionReplies.count == 20 + 12 + 20 + 14 + 20)
        // A read past the end gets EINVAL; the connection stays usable.
        client.send(NBDWire.request(type: 0, handle: 7, offset: 32 << 20, length: 4096))
        let reply = client.receive(16)
        #expect(Array(reply[4..<8]) == bigEndian(UInt32(22)))
        #expect(Array(reply[8..<16]) == bigEndian(UInt64(7)))
        // A write past the end gets ENOSPC (its payload is consumed).
        client.send(NBDWire.request(type: 1, handle: 8, offset: (32 << 20) - 100, length: 512) + [UInt8](repeating: 9, count: 512))
        #expect(Array(client.receive(16)[4..<8]) == bigEndian(UInt32(28)))
        // DISC, then a request: the server hangs up instead.
        client.send(NBDWire.request(type: 2, handle: 9, offset: 0, length: 0))
        client.send(NBDWire.request(type: 0, handle: 10, offset: 0, length: 512))
        #expect(client.closedByPeer())

        #expect(server.isRunning)
        let list = try Shell.check(["nbdinfo", "--list", "nbd+unix:///?socket=\(server.socket)"]).text
        #expect(list.contains("export=\"snap\""))
        #expect(server.stop() == 0)
    }

    /// `--handshake-limit`: a client that stalls in the handshake is disconnected once it runs
    /// out; one that reached transmission may idle past it.
    @Test func stalledHandshakesAreCutOff() throws {
        let pool = try Self.pool()
        let refused = try pool.run("serve", "--handshake-limit=-1")
        #expect(refused.status == 1 && refused.stderr == "snapvol: error: invalid --handshake-limit -1: seconds from 0 (never) to 86400\n")
        let server = try ServeProcess(pool: pool, extra: ["--handshake-limit", "1"])
        let (client, replies) = try RawSocket.transmitting(server.socket, export: "data")
        #expect(replies.count == 86)
        let stalled = try RawSocket(path: server.socket)
        #expect(stalled.receive(18).count == 18)
        let start = Date()
        #expect(stalled.closedByPeer())
        #expect(Date().timeIntervalSince(start) < 4)
        client.send(NBDWire.request(type: 0, handle: 3, offset: 0, length: 512))
        #expect(client.receive(16 + 512) == NBDWire.simpleReply(error: 0, handle: 3)
                + [UInt8](repeating: 0x11, count: 512))
        #expect(server.stop() == 0)
    }

    /// A volume an NBD client has open is not deleted or removed, as `dmsetup remove` refuses a
    /// busy device: the command fails with one line, changes nothing, and `status` counts the
    /// client. `--force` disconnects the client first. A client that leaves frees the volume.
    @Test func aVolumeOpenByAClientIsRemovedOnlyWithForce() throws {
        let pool = try Self.pool()
        let server = try ServeProcess(pool: pool)
        let (client, optionReplies) = try RawSocket.transmitting(server.socket, export: "snap")
        #expect(optionReplies.count == 86)
        let refused = try pool.run("snapshot", "delete", "snap")
        #expect(refused.status == 1)
        #expect(refused.stderr == "snapvol: error: volume 'snap' is in use by 1 NBD client: disconnect it, or use --force to cut it off\n")
        #expect(FileManager.default.fileExists(atPath: pool.file("snap.cow")))
        #expect(try pool.snapshotStatus("snap")?["clients"] as? Int == 1)
        let table = try pool.ok("status").text.split(separator: "\n").map { $0.split(separator: " ") }
        #expect(table[0].suffix(2) == ["OPEN", "STATE"])
        #expect(table.first { $0.first == "snap" }?.suffix(2) == ["1", "active"])
        client.send(NBDWire.request(type: 0, handle: 5, offset: 0, length: 4096))
        #expect(client.receive(16) == NBDWire.simpleReply(error: 0, handle: 5))
        #expect(sameBytes(client.receive(4096), [UInt8](repeating: 0x11, count: 4096)))

        try pool.ok("snapshot", "delete", "snap", "--force")
        #expect(client.closedByPeer())
        #expect(try pool.snapshotStatus("snap") == nil)

        do {
            let (originClient, _) = try RawSocket.transmitting(server.socket, export: "data")
            #expect(try pool.run("origin", "remove", "data").status == 1)
            #expect((try pool.status()["origins"] as? [[String: Any]])?.first?["clients"] as? Int == 1)
            withExtendedLifetime(originClient) {}
        }   // the client hangs up
        let deadline = Date().addingTimeInterval(10)
        while (try pool.status()["origins"] as? [[String: Any]])?.first?["clients"] as? Int != 0, Date() < deadline {
            Thread.sleep(forTimeInterval: 0.05)
        }
        try pool.ok("origin", "remove", "data")
        #expect(server.isRunning)
        try Shell.check(["nbdinfo", "--list", "nbd+unix:///?socket=\(server.socket)"])   // still answering
        #expect(server.stop() == 0)
    }

    /// Merging a snapshot a client has open is refused likewise, before the merge is marked;
    /// `--force` disconnects the snapshot's client only: the origin's client stays connected and
    /// reads the rolled-back data.
    @Test func aForcedMergeDisconnectsOnlyTheSnapshotsClients() throws {
        let pool = try Self.pool()
        try pool.ok("io", "write", "data", "0", "64K", "--pattern", "0x22")
        let server = try ServeProcess(pool: pool)
        let (snapshotClient, _) = try RawSocket.transmitting(server.socket, export: "snap")
        let (originClient, _) = try RawSocket.transmitting(server.socket, export: "data")
        let refused = try pool.run("snapshot", "merge", "snap", "--no-progress")
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("volume 'snap' is in use by 1 NBD client"))
        #expect(try pool.snapshotStatus("snap")?["state"] as? String == "active")
        try pool.ok("snapshot", "merge", "snap", "--no-progress", "--force")
        #expect(snapshotClient.closedByPeer())
        #expect(try pool.snapshotStatus("snap") == nil)
        originClient.send(NBDWire.request(type: 0, handle: 7, offset: 0, length: 4096))
        #expect(originClient.receive(16) == NBDWire.simpleReply(error: 0, handle: 7))
        #expect(sameBytes(originClient.receive(4096), [UInt8](repeating: 0x11, count: 4096)))
        #expect(server.stop() == 0)
    }
}

/// Busy polling (`--busy-poll`): after its last reply an event loop polls its sockets instead of
/// sleeping. Counted, not timed: `serve` reports at shutdown how many polls caught the next
/// request; and `NBDBusyPoll` itself on a socket pair.
@Suite(.mayBlock, .serialized, .enabled(if: Environment.canRun(commands: ["qemu-io"])))
struct BusyPollTests {
    /// The server's log after 2,000 reads sent one at a time by a raw client.
    static func serveLog(busyPoll: String) throws -> String {
        let pool = try NBDClientTests.pool()
        let server = try ServeProcess(pool: pool, extra: ["--busy-poll", busyPoll])
        let (client, _) = try RawSocket.transmitting(server.socket, export: "data")
        var complete = 0
        for handle in 0..<2000 {
            client.send(NBDWire.request(type: 0, handle: UInt64(handle), offset: UInt64(handle % 512) * 4096, length: 4096))
            if client.receive(16 + 4096).count == 16 + 4096 { complete += 1 }
        }
        #expect(complete == 2000)
        #expect(server.stop() == 0)
        return try String(contentsOfFile: server.log, encoding: .utf8)
    }

    @Test func aPollingLoopCatchesMostRequestsBeforeSleeping() throws {
        let log = try Self.serveLog(busyPoll: "1000")
        let figures = log.split(separator: "\n").first { $0.contains("busy polling caught") }?
            .split(separator: " ").compactMap { Int($0) } ?? []
        // One poll per reply; the client answers within the 1 ms limit nearly always (1,997-1,999
        // of 2,000 in three runs of the debug build on an idle machine).
        #expect(figures.count == 2 && figures[1] >= 2000 && figures[0] * 2 >= figures[1], "\(figures)")
        #expect(!(try Self.serveLog(busyPoll: "0")).contains("busy polling"))
    }

    @Test func aPollEndsOnDataOrAtItsLimit() throws {
        var pair: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        defer { close(pair[0]); close(pair[1]) }
        let clock = ContinuousClock()
        let short = NBDBusyPoll(limit: .milliseconds(50))
        short.add(pair[0])
        #expect(clock.measure { short.pollBeforeSleeping() } >= .milliseconds(50))   // nothing to read
        #expect(short.figures == NBDBusyPollFigures(polls: 1, caught: 0))

        let long = NBDBusyPoll(limit: .seconds(5))
        long.add(pair[0])
        let sender = pair[1]
        let writer = Thread {
            Thread.sleep(forTimeInterval: 0.02)
            _ = write(sender, "x", 1)
        }
        writer.start()
        #expect(clock.measure { long.pollBeforeSleeping() } < .seconds(4))   // ends when the byte arrives
        #expect(clock.measure { long.pollBeforeSleeping() } < .seconds(4))   // and at once while it is there
        #expect(long.figures == NBDBusyPollFigures(polls: 2, caught: 2))
        long.remove(pair[0])
        long.pollBeforeSleeping()   // no socket left: nothing to poll
        #expect(long.figures.polls == 2)
    }

    @Test func outOfRangeValuesAreRefused() throws {
        let pool = try NBDClientTests.pool()
        let result = try pool.run("serve", "--busy-poll", "5000")
        #expect(result.status == 1)
        #expect(result.stderr == "snapvol: error: invalid --busy-poll 5000: microseconds from 0 (never) to 1000\n")
    }
}

/// Serve's own duties beyond NBD: autoextend and TCP on loopback.
@Suite(.mayBlock, .serialized, .enabled(if: Environment.canRun(commands: ["nbdinfo", "qemu-io"])))
struct ServeDutiesTests {
    /// Origin `data` (32 MiB) with snapshot `snap` on a 4 MiB COW file.
    static func poolWithASmallCow() throws -> TestPool {
        let pool = try TestPool.withOrigin("data", size: "32M")
        try pool.ok("snapshot", "create", "snap", "--origin", "data", "--cow", pool.file("snap.cow"), "--cow-size", "4M")
        return pool
    }

    @Test func autoextendGrowsAFillingCow() throws {
        let pool = try Self.poolWithASmallCow()
        let server = try ServeProcess(pool: pool, extra: ["--autoextend-threshold", "50", "--autoextend-percent", "100"])
        try Shell.check(["qemu-io", "-f", "raw", "-c", "write -P 0x5 0 3584k", server.uri("data")])
        let deadline = Date().addingTimeInterval(15)
        var size = 0
        while Date() < deadline {
            size = ((try? FileManager.default.attributesOfItem(atPath: pool.file("snap.cow")))?[.size] as? Int) ?? 0
            if size >= 8 << 20 { break }
            Thread.sleep(forTimeInterval: 0.2)
        }
        #expect(size == 8 << 20)
        #expect(server.stop() == 0)
        let log = try String(contentsOfFile: server.log, encoding: .utf8)
        #expect(log.contains("autoextended snapshot snap"))
        #expect(log.contains("warning: snapshot snap COW is"))
        #expect(try pool.snapshotStatus("snap")?["state"] as? String == "active")
    }

    /// The pool's autoextend settings (`pool settings`), changed while a server runs: it applies
    /// them within a second, without flags or a restart, and a new server starts with them.
    @Test func thePoolsAutoextendSettingsApplyLive() throws {
        let pool = try Self.poolWithASmallCow()
        let server = try ServeProcess(pool: pool)
        try Shell.check(["qemu-io", "-f", "raw", "-c", "write -P 0x5 0 3584k", server.uri("data")])
        Thread.sleep(forTimeInterval: 2)
        func cowSize() -> Int { ((try? FileManager.default.attributesOfItem(atPath: pool.file("snap.cow")))?[.size] as? Int) ?? 0 }
        #expect(cowSize() == 4 << 20, "off until set")
        #expect(try pool.ok("pool", "settings", "--autoextend-threshold", "50", "--autoextend-percent", "100").text
                == "autoextend: at 50% full, by 100% of the COW\n")
        let deadline = Date().addingTimeInterval(15)
        while cowSize() < 8 << 20, Date() < deadline { Thread.sleep(forTimeInterval: 0.2) }
        #expect(cowSize() == 8 << 20)
        #expect(server.stop() == 0)
        #expect(try pool.ok("pool", "settings").text == "autoextend: at 50% full, by 100% of the COW\n", "kept in the pool")
        let refused = try pool.run("pool", "settings", "--autoextend-threshold", "40")
        #expect(refused.status == 1)
        #expect(refused.stderr == "snapvol: error: --autoextend-threshold must be from 50 to 99 (percent)\n")
    }

    /// serve makes its own listening socket: a file that is not a socket is refused and kept,
    /// a socket left by an earlier server is replaced, and its own is removed at shutdown.
    @Test func theSocketPathIsCheckedReplacedAndRemoved() throws {
        let pool = try TestPool()
        try pool.ok("pool", "init")
        try pool.ok("origin", "add", "data", "--path", pool.file("data.img"), "--size", "1M")
        let path = pool.file("taken")
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: path))
        let refused = try pool.run("serve", "--socket", path)
        #expect(refused.status == 1)
        #expect(refused.stderr == "snapvol: error: cannot listen on \(path): bind (the path exists and is not a socket) failed: File exists\n")
        #expect(FileManager.default.contents(atPath: path) == Data("keep me".utf8))
        let socketPath = pool.file("nbd.sock")   // a socket left behind, as by a server killed with -9
        let stale = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(socketPath.utf8)) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(stale, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        close(stale)
        #expect(bound == 0 && FileManager.default.fileExists(atPath: socketPath))
        for _ in 0..<2 {   // the first replaces the stale socket; the second finds none (removed at shutdown)
            let server = try ServeProcess(pool: pool)
            let mode = (try FileManager.default.attributesOfItem(atPath: server.socket)[.posixPermissions] as? Int) ?? 0
            #expect(mode & 0o777 == 0o600)
            try Shell.check(["nbdinfo", "--size", server.uri("data")])
            #expect(server.stop() == 0)
            #expect(!FileManager.default.fileExists(atPath: server.socket))
        }
    }

    @Test func tcpListensOnLoopbackByDefault() throws {
        let pool = try TestPool()
        try pool.ok("pool", "init")
        try pool.ok("origin", "add", "data", "--path", pool.file("data.img"), "--size", "1M")
        let port = Int.random(in: 20000...60000)
        let server = try ServeProcess(pool: pool, extra: ["--listen", ":\(port)"])
        let info = try Shell.check(["nbdinfo", "nbd://127.0.0.1:\(port)/data"]).text
        #expect(info.contains("1048576"))
        #expect(try String(contentsOfFile: server.log, encoding: .utf8).contains("127.0.0.1:\(port)"))
        server.stop()
    }
}

/// A file-backed COW that cannot grow (a full file system): autoextend fails with ENOSPC and
/// says so, the snapshot is invalidated when it fills and reported once, the origin keeps
/// accepting writes. Needs root to mount a small tmpfs (always in CI).
@Suite(.mayBlock, .serialized, .enabled(if: Environment.canRun(needsRoot: true, commands: ["qemu-io", "mount"])))
struct FullFileSystemTests {
    @Test func autoextendIntoAFullFileSystem() throws {
        let pool = try TestPool()
        let fileSystem = try SmallFileSystem(in: pool, size: "3M")
        defer { fileSystem.unmount() }
        let small = fileSystem.path
        try pool.ok("pool", "init")
        try pool.ok("origin", "add", "data", "--path", pool.file("data.img"), "--size", "16M")
        // Data, not holes: copies of zeros onto the COW's holes would not be written.
        try pool.ok("io", "write", "data", "0", "16M", "--pattern", "0x1")
        try pool.ok("snapshot", "create", "snap", "--origin", "data", "--cow", "\(small)/snap.cow", "--cow-size", "2M")
        let server = try ServeProcess(pool: pool, extra: ["--autoextend-threshold", "50", "--autoextend-percent", "100"])
        try Shell.check(["qemu-io", "-f", "raw", "-c", "write -P 0x7 0 1536k", server.uri("data")])
        try server.waitForLog(containing: "autoextend of snap failed", within: 15)
        try Shell.check(["qemu-io", "-f", "raw", "-c", "write -P 0x8 2M 4M", server.uri("data")])
        Thread.sleep(forTimeInterval: 2.5)
        #expect(server.stop() == 0)
        let log = try String(contentsOfFile: server.log, encoding: .utf8)
        #expect(log.components(separatedBy: "autoextend of snap failed").count == 2, "a failing autoextend is reported once: \(log)")
        #expect(log.contains("No space left on device"), "\(log)")
        #expect(log.components(separatedBy: "ERROR: snapshot snap is INVALID").count == 2, "reported exactly once: \(log)")
        #expect(try pool.snapshotStatus("snap")?["state"] as? String == "invalid")
        #expect([UInt8](try pool.ok("io", "read", "data", "3M", "2").stdout) == [8, 8])
        try pool.ok("snapshot", "delete", "snap")
    }

    /// A sparse origin whose file system fills: the client is told ENOSPC, not EIO, so qemu's
    /// `werror=enospc` can pause the VM until space is freed instead of failing the guest's I/O.
    /// Once space is freed, writes go through again.
    @Test func anOriginOnAFullFileSystemAnswersENOSPC() throws {
        let pool = try TestPool()
        let fileSystem = try SmallFileSystem(in: pool, size: "4M")
        defer { fileSystem.unmount() }
        let small = fileSystem.path
        try pool.ok("pool", "init")
        try pool.ok("origin", "add", "vm", "--path", "\(small)/vm.img", "--size", "16M")
        try Shell.check(["dd", "if=/dev/zero", "of=\(small)/ballast", "bs=1M", "count=2", "status=none"])
        let server = try ServeProcess(pool: pool)
        let full = try Shell.run(["qemu-io", "-f", "raw", "-c", "write -P 0x7 0 4M", server.uri("vm")])
        #expect((full.text + full.stderr).contains("No space left on device"), "\(full.text) \(full.stderr)")
        try FileManager.default.removeItem(atPath: "\(small)/ballast")
        try Shell.check(["qemu-io", "-f", "raw", "-c", "write -P 0x8 0 1M", server.uri("vm")])
        #expect(try pool.ok("io", "read", "vm", "0", "1M").stdout.allSatisfy { $0 == 8 })
        #expect(server.stop() == 0)
    }
}

extension FullFileSystemTests {
    /// The pool's own directory full: the first origin write cannot record that snapvol writes
    /// the origin (its registry cannot be saved), and goes through all the same, saying so.
    @Test func aFullPoolDirectoryDoesNotStopOriginWrites() throws {
        let pool = try TestPool()
        try FileManager.default.createDirectory(atPath: pool.path, withIntermediateDirectories: true)
        try Shell.check(["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", pool.path])
        defer { _ = try? Shell.run(["umount", pool.path]) }
        try pool.ok("pool", "init")
        try pool.ok("origin", "add", "vm", "--path", pool.dir.file("vm.img"), "--size", "4M")
        try pool.ok("snapshot", "create", "s", "--origin", "vm", "--cow", pool.dir.file("s.cow"), "--cow-size", "4M")
        let server = try ServeProcess(pool: pool)
        _ = try? Shell.run(["dd", "if=/dev/zero", "of=\(pool.path)/ballast", "bs=64k", "status=none"])
        try Shell.check(["qemu-io", "-f", "raw", "-c", "write -P 0x7 0 64k", server.uri("vm")])
        try server.waitForLog(containing: "vm: could not record that snapvol writes it (")
        try FileManager.default.removeItem(atPath: "\(pool.path)/ballast")
        #expect(server.stop() == 0)
        #expect([UInt8](try pool.ok("io", "read", "vm", "0", "2").stdout) == [7, 7])
        #expect([UInt8](try pool.ok("io", "read", "s", "0", "2").stdout) == [0, 0])
    }
}

/// A small tmpfs mounted in a pool's directory (root); the test unmounts it (`defer`).
struct SmallFileSystem {
    let path: String

    init(in pool: TestPool, size: String) throws {
        path = pool.file("small-fs")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try Shell.check(["mount", "-t", "tmpfs", "-o", "size=\(size)", "tmpfs", path])
    }

    func unmount() { _ = try? Shell.run(["umount", path]) }
}
