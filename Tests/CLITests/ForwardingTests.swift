import Foundation
import Testing
import Controller
import TestSupport

/// While `snapvol serve` owns the pool, every command is forwarded to it: same output, same
/// exit codes, same one-line errors.
@Suite(.mayBlock) struct ForwardingTests {
    static func pool() throws -> TestPool { try TestPool.withOrigin("data", size: "4M", pattern: "0x11") }

    @Test func refusalsLookTheSameWithAServer() throws {
        let pool = try Self.pool()
        try pool.ok("snapshot", "create", "snap", "--origin", "data", "--cow", pool.file("snap.cow"))
        let cases: [[String]] = [
            ["snapshot", "create", "snap", "--origin", "data", "--cow", pool.file("x.cow")],
            ["io", "read", "nope", "0", "1"],
            ["io", "read", "data", "0"],
            ["io", "read", "data", "4M", "1"],
            ["snapshot", "create", "s2", "--origin", "data", "--cow", pool.file("c.cow"), "--chunk-size", "3K"],
        ]
        let local = try cases.map { try SnapvolBinary.run($0 + ["--pool", pool.path]) }
        let server = try ServeProcess(pool: pool)
        let forwarded = try cases.map { try SnapvolBinary.run($0 + ["--pool", pool.path]) }
        for (index, arguments) in cases.enumerated() {
            #expect(forwarded[index].status == local[index].status, "\(arguments)")
            #expect(forwarded[index].stderr == local[index].stderr, "\(arguments)")
            #expect(forwarded[index].stderr.split(separator: "\n").count == 1)
        }
        #expect(try pool.ok("status", "--dm").text == (try pool.ok("status", "--dm").text))
        server.stop()
    }

    /// `snapvol --pool DIR COMMAND` works as `snapvol COMMAND --pool DIR` does (as `git -C DIR`),
    /// run locally and forwarded to a server, with `--pool=DIR`, `--wait` and a `--` after.
    @Test func poolOptionsMayComeBeforeTheCommand() throws {
        let pool = try Self.pool()
        let forms: [[String]] = [["--pool", pool.path], ["--pool=\(pool.path)"], ["--wait", "0", "--pool", pool.path]]
        for (index, leading) in forms.enumerated() {
            let created = try SnapvolBinary.run(leading + ["snapshot", "create", "s\(index)", "--origin", "data", "--cow", pool.file("s\(index).cow")])
            #expect(created.status == 0, "\(leading): \(created.stderr)")
        }
        let server = try ServeProcess(pool: pool)
        let written = try SnapvolBinary.run(["--pool", pool.path, "io", "write", "data", "0", "4K", "--pattern", "0x22"])
        #expect(written.status == 0, "\(written.stderr)")
        let read = try SnapvolBinary.run(["--pool", pool.path, "io", "read", "s0", "0", "1"])
        #expect(read.status == 0 && read.stdout == Data([0x11]), "the snapshot kept the old byte: \(read.stderr)")
        let status = try SnapvolBinary.run(["--pool", pool.path, "status", "--json"])
        #expect(status.status == 0 && ["s0", "s1", "s2"].allSatisfy { status.text.contains("\"\($0)\"") }, "\(status.text)")
        let missing = try SnapvolBinary.run(["--pool"])
        #expect(missing.status == 64 && missing.stderr.split(separator: "\n").count == 1, "\(missing.stderr)")
        server.stop()
    }

    /// `events` shows the pool's events whoever saw them: a command's from the pool's event log,
    /// then the server's, numbered on (`--after` for what is new), and the log keeps them after
    /// the server stops.
    @Test func eventsOutliveTheProcessThatSawThem() throws {
        let pool = try Self.pool()
        #expect(try pool.ok("events").text == "no events\n")
        try pool.ok("snapshot", "create", "first", "--origin", "data", "--cow", pool.file("first.cow"))
        let logged = try pool.ok("events").text.split(separator: "\n")
        #expect(logged.count == 1 && logged[0].hasSuffix("  first: created (COW \(pool.file("first.cow")), chunk 16 KiB)"), "\(logged)")
        let server = try ServeProcess(pool: pool)
        try pool.ok("snapshot", "create", "second", "--origin", "data", "--cow", pool.file("second.cow"))
        let all = try #require(try JSONSerialization.jsonObject(with: pool.ok("events", "--json").stdout) as? [[String: Any]])
        #expect(all.compactMap { $0["text"] as? String }.map { $0.prefix(14) } == ["first: created", "second: create"])
        let firstSequence = try #require(all.first?["sequence"] as? Int)
        #expect(all.last?["sequence"] as? Int == firstSequence + 1, "the server numbers on from the log")
        let newer = try #require(try JSONSerialization.jsonObject(with: pool.ok("events", "--json", "--after", "\(firstSequence)").stdout)
                                 as? [[String: Any]])
        #expect(newer.map { $0["text"] as? String } == [all[1]["text"] as? String])
        #expect(newer.first?["alarm"] as? Bool == false)
        #expect(server.stop() == 0)
        #expect(try pool.ok("events").text.split(separator: "\n").count == 2, "kept after the server stopped")
    }

    /// `events --follow` prints each new event as it comes: from the log while no process holds
    /// the pool, from the server once one runs; it never runs inside the server.
    @Test func followingEventsSeesThemAsTheyCome() throws {
        let pool = try Self.pool()
        let follower = Process()
        follower.executableURL = URL(fileURLWithPath: SnapvolBinary.path)
        follower.arguments = ["events", "--follow", "--pool", pool.path]
        let output = Pipe()
        follower.standardOutput = output
        try follower.run()
        defer { if follower.isRunning { follower.terminate() } }
        func nextLine() -> String {
            var line = Data()
            while line.last != UInt8(ascii: "\n"), case let byte = output.fileHandleForReading.readData(ofLength: 1), !byte.isEmpty { line += byte }
            return String(decoding: line, as: UTF8.self)
        }
        try pool.ok("snapshot", "create", "first", "--origin", "data", "--cow", pool.file("first.cow"))
        #expect(nextLine().hasSuffix("  first: created (COW \(pool.file("first.cow")), chunk 16 KiB)\n"))
        let server = try ServeProcess(pool: pool)
        try pool.ok("snapshot", "rename", "first", "kept")
        #expect(nextLine().hasSuffix("  first: renamed to kept\n"))
        #expect(server.stop() == 0)
        #expect(follower.isRunning, "it follows until interrupted")
    }

    /// The event log rotates past about 1 MiB, keeps its order across the two files, and skips a
    /// line torn by a crash.
    @Test func theEventLogRotatesAndSkipsATornLine() throws {
        let directory = try TemporaryDirectory()
        let log = EventLog(path: directory.file("events.log"))
        let journal = EventJournal(log: log)
        let text = String(repeating: "x", count: 1000)
        for index in 0..<1500 { journal.record("\(index) \(text)") }
        #expect(FileManager.default.fileExists(atPath: directory.file("events.log.1")))
        let size = try #require(try FileManager.default.attributesOfItem(atPath: directory.file("events.log"))[.size] as? Int)
        #expect(size < 1 << 20)
        FileHandle(forWritingAtPath: directory.file("events.log")).map { handle in
            handle.seekToEndOfFile()
            handle.write(Data(#"{"sequence": 1500, "ti"#.utf8))
            handle.closeFile()
        }
        let reopened = EventJournal(log: log)
        #expect(reopened.recent.map(\.sequence) == Array(1300..<1500))
        reopened.record("after the crash")
        #expect(EventLog(path: directory.file("events.log")).tail(1).map(\.text) == ["after the crash"],
                "a new line starts after the torn one: \(reopened.recent.last.map(\.sequence) ?? -1)")
    }

    /// `io map --exceptions --cells N`: the share of each Nth of the volume a snapshot holds
    /// (the TUI's chunk map), the same with and without a server.
    @Test func mapPartsSayHowMuchOfEachPartASnapshotHolds() throws {
        let pool = try Self.pool()
        try pool.ok("snapshot", "create", "snap", "--origin", "data", "--cow", pool.file("snap.cow"), "--chunk-size", "4K",
                    "--cow-size", "4M")
        try pool.ok("io", "write", "data", "0", "1536K", "--pattern", "0x22")
        let expected = "0 1048576 1.0\n1048576 1048576 0.5\n2097152 1048576 0.0\n3145728 1048576 0.0\n"
        #expect(try pool.ok("io", "map", "snap", "--exceptions", "--cells", "4").text == expected)
        let server = try ServeProcess(pool: pool)
        #expect(try pool.ok("io", "map", "snap", "--exceptions", "--cells", "4").text == expected)
        for (arguments, message) in [(["--cells", "4"], "--cells needs --exceptions (a snapshot's chunks)"),
                                     (["--exceptions", "--cells", "0"], "invalid --cells 0: from 1 to 4096")] {
            let refused = try pool.run(arguments: ["io", "map", "snap"] + arguments)
            #expect(refused.status == 1 && refused.stderr == "snapvol: error: \(message)\n", "\(refused.stderr)")
        }
        // An invalid snapshot shows no parts, as it shows no extents.
        try pool.ok("snapshot", "create", "small", "--origin", "data", "--cow", pool.file("small.cow"), "--cow-size", "64K",
                    "--chunk-size", "4K")
        try pool.ok("io", "write", "data", "0", "1M", "--pattern", "0x23")
        let invalid = try pool.run("io", "map", "small", "--exceptions", "--cells", "4")
        #expect(invalid.status == 1 && invalid.stderr.hasPrefix("snapvol: error: small: snapshot is invalid ("), "\(invalid.stderr)")
        #expect(server.stop() == 0)
    }

    /// Output larger than the socket takes at once arrives whole (it was cut short at about
    /// 200 KiB when the server closed the connection before its writes had drained).
    @Test func largeOutputArrivesWhole() throws {
        let pool = try Self.pool()
        let server = try ServeProcess(pool: pool)
        let read = try pool.ok("io", "read", "data", "0", "4M").stdout
        #expect(read.count == 4 << 20)
        #expect(read.allSatisfy { $0 == 0x11 })
        server.stop()
    }

    /// A long output read slowly is not held in the server: it writes on as the socket takes
    /// it. Without that, this test's 256 MiB, read by a client that waits a second first, raised
    /// the server's peak RSS by 272 MB (session 12); a 1 GiB read by 942 MB, 9 MB with it.
    @Test func longOutputDoesNotPileUpInTheServer() throws {
        let pool = try TestPool()
        try pool.ok("pool", "init")
        try pool.ok("origin", "add", "big", "--path", pool.file("big.img"), "--size", "256M")
        try pool.ok("io", "write", "big", "0", "256M", "--pattern", "0x5a")
        let server = try ServeProcess(pool: pool)
        let before = try #require(server.peakResidentBytes)
        let reader = "\(SnapvolBinary.path) io read big 0 256M --pool \(pool.path) | (sleep 1; wc -c)"
        #expect(try Shell.check(["sh", "-c", reader]).text.trimmingCharacters(in: .whitespacesAndNewlines) == "\(256 << 20)")
        let after = try #require(server.peakResidentBytes)
        #expect(after - before < 64 << 20, "the server's peak RSS grew by \(after - before) bytes")
        server.stop()
    }

    @Test func transientSnapshotsLiveInTheServer() throws {
        let pool = try Self.pool()
        let server = try ServeProcess(pool: pool)
        try pool.ok("snapshot", "create", "t", "--origin", "data", "--cow", pool.file("t.cow"), "--transient", "--cow-size", "2M")
        try pool.ok("io", "write", "data", "0", "64K", "--pattern", "0x22")
        #expect([UInt8](try pool.ok("io", "read", "t", "0", "4").stdout) == [0x11, 0x11, 0x11, 0x11])
        #expect([UInt8](try pool.ok("io", "read", "data", "0", "4").stdout) == [0x22, 0x22, 0x22, 0x22])
        let status = try #require(try pool.snapshotStatus("t"))
        #expect(status["persistent"] as? Bool == false)
        #expect(status["exceptions"] as? Int == 4)
        server.stop()
        // Its exceptions were in the server's memory: a later owner reports it invalid.
        #expect(try pool.snapshotStatus("t")?["state"] as? String == "invalid")
        try pool.ok("snapshot", "delete", "t")
    }

    @Test func serveRefusesToRunInsideItself() throws {
        let pool = try Self.pool()
        let server = try ServeProcess(pool: pool)
        let second = try pool.run("serve")
        #expect(second.status != 0)
        #expect(second.stderr.contains("in use by"))
        server.stop()
    }
}
