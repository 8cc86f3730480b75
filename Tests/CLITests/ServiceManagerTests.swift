import Foundation
import Testing
import TestSupport

/// `snapvol serve` under a service manager (systemd's `Type=notify` protocol): `READY=1` once
/// both sockets accept, `STATUS=` as clients and COW fill change, `WATCHDOG=1` at half
/// `$WATCHDOG_USEC`, `STOPPING=1` on SIGTERM. The test binds the notification socket itself, as
/// systemd does, and reads the datagrams.
@Suite(.mayBlock) struct ServiceManagerTests {
    static func pool() throws -> TestPool { try TestPool.withVM(snapshot: "nightly", "--cow-size", "4M") }

    @Test func serveTellsTheServiceManagerWhenItIsReadyAliveAndStopping() throws {
        let pool = try Self.pool()
        let notify = try NotifySocket(address: pool.file("notify.sock"))
        let server = try ServeProcess(pool: pool, environment: ["NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": "400000"])
        var skipped: [String] = []
        let ready = try #require(notify.receive(containing: "READY=1", within: 20, skipped: &skipped))
        #expect(ready.contains("STATUS=serving 2 volumes, 0 NBD clients; fullest COW: nightly 0%"))
        // Ready means both sockets accept: an NBD client and a forwarded command get through.
        let (client, go) = try RawSocket.transmitting(server.socket, export: "vm")
        #expect(go.count == 86)
        #expect(try #require(notify.receive(containing: "STATUS=serving 2 volumes, 1 NBD client;", within: 5, skipped: &skipped))
            .contains("fullest COW: nightly 0%"))
        try pool.ok("io", "write", "vm", "0", "2M", "--pattern", "0x5a")
        let json = try #require(try JSONSerialization.jsonObject(with: pool.ok("status", "--json").stdout) as? [String: Any])
        let origins = try #require(json["origins"] as? [[String: Any]])
        let fill = try #require((origins.first?["snapshots"] as? [[String: Any]])?.first?["fill_percent"] as? Double)
        #expect(fill > 50)
        let filled = "STATUS=serving 2 volumes, 1 NBD client; fullest COW: nightly \(Int(fill.rounded()))%"
        #expect(notify.receive(containing: filled, within: 5, skipped: &skipped) != nil, "\(skipped)")
        // 0.2 s apart: at least 5 in the 2 s after those.
        let clock = ContinuousClock()
        let start = clock.now
        var pings = 0
        while clock.now - start < .seconds(2), notify.receive(containing: "WATCHDOG=1", within: 1, skipped: &skipped) != nil { pings += 1 }
        #expect(pings >= 5)
        // SIGHUP reloads (Type=notify-reload): RELOADING=1 with the time, then READY=1; it lives on.
        kill(server.processIdentifier, SIGHUP)
        #expect(try #require(notify.receive(containing: "RELOADING=1", within: 5, skipped: &skipped)).contains("MONOTONIC_USEC="))
        #expect(notify.receive(containing: "READY=1", within: 5, skipped: &skipped) != nil)
        try server.waitForLog(containing: "SIGHUP: nothing to reload (no TLS)")
        #expect(server.isRunning)
        _ = client
        #expect(server.stop() == 0)
        #expect(notify.receive(containing: "STOPPING=1", within: 5, skipped: &skipped) != nil)
        #expect(!skipped.contains { $0.contains("READY=1") }, "READY=1 is sent once at start and once per reload")
    }

    /// A server starting on an origin written outside snapvol says so in its status line,
    /// where `systemctl status` shows it.
    @Test func theStatusLineNamesSuspectSnapshots() throws {
        let pool = try Self.pool()
        let image = try FileHandle(forWritingTo: URL(fileURLWithPath: pool.file("vm.img")))
        try image.write(contentsOf: [0x01])
        try image.close()
        let notify = try NotifySocket(address: pool.file("notify.sock"))
        let server = try ServeProcess(pool: pool, environment: ["NOTIFY_SOCKET": notify.address])
        var skipped: [String] = []
        let ready = try #require(notify.receive(containing: "READY=1", within: 20, skipped: &skipped))
        #expect(ready.contains("STATUS=serving 2 volumes, 0 NBD clients; 1 snapshot suspect (origin or COW changed outside snapvol): nightly;"),
                "\(ready)")
        #expect(server.stop() == 0)
    }

    /// An origin that cannot be opened (its file gone; or held back, its device renamed) is
    /// named in the status line too.
    @Test func theStatusLineNamesInactiveVolumes() throws {
        let pool = try Self.pool()
        try pool.ok("origin", "add", "gone", "--path", pool.file("gone.img"), "--size", "1M")
        try FileManager.default.removeItem(atPath: pool.file("gone.img"))
        let notify = try NotifySocket(address: pool.file("notify.sock"))
        let server = try ServeProcess(pool: pool, environment: ["NOTIFY_SOCKET": notify.address])
        var skipped: [String] = []
        let ready = try #require(notify.receive(containing: "READY=1", within: 20, skipped: &skipped))
        #expect(ready.contains("STATUS=serving 3 volumes, 0 NBD clients; 1 volume is inactive: gone; fullest COW: nightly 0%"), "\(ready)")
        #expect(server.stop() == 0)
    }

    /// An abstract socket name (`@...`), as some managers use; a `$WATCHDOG_PID` naming another
    /// process asks for no watchdog.
    @Test func abstractSocketAndAWatchdogForAnotherProcess() throws {
        let pool = try Self.pool()
        let notify = try NotifySocket(address: "@snapvol-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        let server = try ServeProcess(pool: pool, environment: ["NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": "200000",
                                                                "WATCHDOG_PID": "1"])
        var skipped: [String] = []
        #expect(notify.receive(containing: "READY=1", within: 20, skipped: &skipped) != nil)
        #expect(notify.receive(containing: "WATCHDOG=1", within: 1, skipped: &skipped) == nil)
        #expect(server.stop() == 0)
        #expect(notify.receive(containing: "STOPPING=1", within: 5, skipped: &skipped) != nil)
    }

    /// With standard error on the journal, each line carries its priority: a lost snapshot is
    /// an error (`<3>`), the rest notices (`<5>`); with `$JOURNAL_STREAM` naming another
    /// stream, plain lines.
    @Test func journalLinesCarryTheirPriority() throws {
        let pool = try Self.pool()
        try pool.ok("snapshot", "create", "tiny", "--origin", "vm", "--cow", pool.file("tiny.cow"), "--cow-size", "256K")
        let server = try ServeProcess(pool: pool, journal: true)
        try pool.ok("io", "write", "vm", "0", "2M", "--pattern", "0x5a")
        try server.waitForLog(containing: "INVALIDATED")
        #expect(server.stop() == 0)
        let log = try String(contentsOfFile: server.log, encoding: .utf8)
        let lines = log.split(separator: "\n")
        #expect(lines.contains { $0.hasPrefix("<5>snapvol: serving 3 volume(s)") }, "\(log)")
        #expect(lines.contains { $0.hasPrefix("<3>snapvol: tiny: INVALIDATED") }, "\(log)")
        #expect(lines.allSatisfy { $0.hasPrefix("<3>snapvol: ") || $0.hasPrefix("<4>snapvol: ") || $0.hasPrefix("<5>snapvol: ") }, "\(log)")

        // A variable inherited from a parent whose stream was the journal, stderr now elsewhere.
        let plain = try ServeProcess(pool: pool, environment: ["JOURNAL_STREAM": "1:2"])
        #expect(plain.stop() == 0)
        #expect(try String(contentsOfFile: plain.log, encoding: .utf8).hasPrefix("snapvol: serving"))
    }

    /// A `$NOTIFY_SOCKET` that is no socket address is refused with one line before anything
    /// starts (the pool is not locked, no socket is made); one nobody listens on only warns.
    @Test func badNotifySocketsAreRefusedOrReportedOnce() throws {
        let pool = try Self.pool()
        let refused = try SnapvolBinary.run(["serve", "--pool", pool.path], environment: ["NOTIFY_SOCKET": "relative/notify.sock"])
        #expect(refused.status == 1)
        #expect(refused.stderr == "snapvol: error: NOTIFY_SOCKET 'relative/notify.sock': not an absolute path or an abstract name (@...) of at most 107 bytes\n")
        #expect(!FileManager.default.fileExists(atPath: "\(pool.path)/nbd.sock"))

        let server = try ServeProcess(pool: pool, environment: ["NOTIFY_SOCKET": pool.file("nobody.sock"), "WATCHDOG_USEC": "200000"])
        Thread.sleep(forTimeInterval: 1)
        try pool.ok("status")
        #expect(server.isRunning)
        #expect(server.stop() == 0)
        let log = try String(contentsOfFile: server.log, encoding: .utf8)
        #expect(log.components(separatedBy: "could not notify the service manager").count == 2, "\(log)")
    }
}
