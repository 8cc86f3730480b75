import BlockDevices
import Foundation
import Testing
import TestSupport

/// A command finding the pool held by another process waits for it (`--wait`, default 60 s),
/// as LVM waits for a volume group's lock, so two cron jobs do not fail each other.
@Suite(.mayBlock, .enabled(if: Environment.canRun(commands: ["flock"])))
struct PoolWaitTests {
    static func registry(_ pool: TestPool) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: pool.file("pool/registry.json"))) }

    @Test func aCommandWaitsForAShortHolder() throws {
        let pool = try TestPool.withOrigin("vm", size: "4M")
        let holder = try PoolLockHolder(pool: pool.path, seconds: 1.5)
        defer { withExtendedLifetime(holder) {} }
        let start = Date()
        let created = try pool.run("snapshot", "create", "s", "--origin", "vm", "--cow", pool.file("s.cow"))
        #expect(created.status == 0, "\(created.stderr)")
        #expect(created.text == "created snapshot s of vm\n")
        #expect(created.stderr.isEmpty, "no notice when standard error is not a terminal")
        #expect(Date().timeIntervalSince(start) >= 0.5, "it waited")
        #expect(try pool.snapshotStatus("s")?["state"] as? String == "active")
    }

    @Test func aHolderThatStaysIsReportedAtOnceOrAfterTheWait() throws {
        let pool = try TestPool.withOrigin("vm", size: "4M")
        let before = try Self.registry(pool)
        let holder = try PoolLockHolder(pool: pool.path, seconds: 30)
        defer { withExtendedLifetime(holder) {} }
        let prefix = "snapvol: error: pool \(pool.file("pool")) is "
        let atOnce = try pool.run("snapshot", "create", "s", "--origin", "vm", "--cow", pool.file("s.cow"), "--wait", "0")
        #expect(atOnce.status == 1)
        // The holder is named by the pid that took the lock (here flock(1), gone since; a
        // snapvol holder is named with its command line).
        #expect(atOnce.stderr.wholeMatch(of: /snapvol: error: pool \S+ is in use by process [0-9]+\n/) != nil, "\(atOnce.stderr)")
        #expect(atOnce.stderr.hasPrefix(prefix))
        let waited = try pool.run("snapshot", "create", "s", "--origin", "vm", "--cow", pool.file("s.cow"), "--wait", "0.5")
        #expect(waited.status == 1)
        #expect(waited.stderr.hasPrefix(prefix + "still in use by process "), "\(waited.stderr)")
        #expect(waited.stderr.hasSuffix(" after waiting 0.5 s\n"), "\(waited.stderr)")
        #expect(try Self.registry(pool) == before)
        #expect(!FileManager.default.fileExists(atPath: pool.file("s.cow")))
        let bad = try pool.run("status", "--wait=-1")
        #expect(bad.status == 64)
        #expect(bad.stderr == "snapvol: error: --wait -1.0: give seconds from 0 (see 'snapvol --help')\n")
    }

    /// On a terminal, a waiting command says what it waits for, once.
    @Test(.enabled(if: Environment.canRun(commands: ["tmux"])))
    func onATerminalTheWaitIsAnnounced() throws {
        let pool = try TestPool.withOrigin("vm", size: "4M")
        var holder: PoolLockHolder? = try PoolLockHolder(pool: pool.path, seconds: 30)
        let session = try TmuxSession(command: "\(SnapvolBinary.path) status --pool \(pool.file("pool")); echo EXIT $?; sleep 60")
        // Held until the notice is up, however slowly the terminal starts, then let go.
        try session.waitFor(text: "waiting for pool")
        withExtendedLifetime(holder) {}
        holder = nil
        let screen = try session.waitFor(text: "EXIT 0")
        #expect(screen.contains("snapvol: waiting for pool \(pool.file("pool")), in use by process "), "\(screen)")
        #expect(screen.contains("(--wait 60 s)"))
        #expect(screen.components(separatedBy: "waiting for pool").count == 2, "announced once")
        #expect(screen.contains("vm "), "then the status")
    }

    /// A command and a server both waiting for a holder: whichever gets the pool first, both
    /// succeed (the command runs alone, or is forwarded to the server).
    @Test func aWaitingCommandAndAStartingServerBothGetThrough() throws {
        let pool = try TestPool.withOrigin("vm", size: "4M")
        let holder = try PoolLockHolder(pool: pool.path, seconds: 1)
        defer { withExtendedLifetime(holder) {} }
        let command = Process()
        command.executableURL = URL(fileURLWithPath: SnapvolBinary.path)
        command.arguments = ["snapshot", "create", "s", "--origin", "vm", "--cow", pool.file("s.cow"), "--pool", pool.file("pool")]
        command.standardOutput = FileHandle.nullDevice
        command.standardError = FileHandle.nullDevice
        try command.run()
        let server = try ServeProcess(pool: pool)
        command.waitUntilExit()
        #expect(command.terminationStatus == 0)
        #expect(try pool.snapshotStatus("s")?["state"] as? String == "active")
        #expect(server.stop() == 0)
    }

    /// `snapvol io read` of `length` bytes of `volume` to a pipe nobody reads yet: it holds the
    /// pool (blocked writing its output) until the pipe is drained.
    static func blockedRead(_ pool: TestPool, _ volume: String, _ length: String) throws -> (Process, Pipe) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: SnapvolBinary.path)
        process.arguments = ["io", "read", volume, "0", length, "--pool", pool.path]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Until the socket accepts (its file appears at bind, before it listens).
        let deadline = Date().addingTimeInterval(20)
        while (try? RawSocket(path: pool.file("pool/control.sock"))) == nil, Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        return (process, output)
    }

    /// While one command holds the pool (a long read), commands run elsewhere go through it:
    /// the status is answered and a snapshot is taken, without waiting for the read.
    @Test func aCommandHoldingThePoolRunsOthersCommands() throws {
        let pool = try TestPool.withOrigin("vm", size: "4M", pattern: "0x11")
        let (reader, output) = try Self.blockedRead(pool, "vm", "4M")
        let start = Date()
        #expect(try pool.snapshotStatus("s") == nil)
        #expect(try pool.ok("snapshot", "create", "s", "--origin", "vm", "--cow", pool.file("s.cow"), "--wait", "0").text == "created snapshot s of vm\n")
        #expect(Date().timeIntervalSince(start) < 30, "nobody waited for the read")
        #expect(reader.isRunning)
        let bytes = output.fileHandleForReading.readDataToEndOfFile()
        reader.waitUntilExit()
        #expect(reader.terminationStatus == 0)
        #expect(bytes.count == 4 << 20 && bytes.allSatisfy { $0 == 0x11 })
        #expect(!FileManager.default.fileExists(atPath: pool.file("pool/control.sock")))
        #expect(try pool.snapshotStatus("s")?["state"] as? String == "active", "the snapshot outlives the process it was taken in")
    }

    /// A command forwarded to a holder finishes before the holder exits: the holder's own work
    /// ends first, the forwarded one still delivers all its output and its exit status.
    @Test func aHolderLetsForwardedCommandsFinishBeforeItExits() throws {
        let pool = try TestPool.withOrigin("vm", size: "4M", pattern: "0x11")
        let (holder, holderOutput) = try Self.blockedRead(pool, "vm", "1M")
        let forwarded = Process()
        forwarded.executableURL = URL(fileURLWithPath: SnapvolBinary.path)
        forwarded.arguments = ["io", "read", "vm", "0", "4M", "--pool", pool.path]
        let forwardedOutput = Pipe()
        forwarded.standardOutput = forwardedOutput
        try forwarded.run()
        Thread.sleep(forTimeInterval: 0.5)
        // Its own output, all of it (its end of file comes only when it exits).
        var own = Data()
        while own.count < 1 << 20, case let piece = holderOutput.fileHandleForReading.readData(ofLength: (1 << 20) - own.count), !piece.isEmpty {
            own += piece
        }
        #expect(own.count == 1 << 20)
        Thread.sleep(forTimeInterval: 0.5)
        #expect(holder.isRunning, "the holder waits for the command it runs for another process")
        let bytes = forwardedOutput.fileHandleForReading.readDataToEndOfFile()
        forwarded.waitUntilExit()
        holder.waitUntilExit()
        #expect(forwarded.terminationStatus == 0 && holder.terminationStatus == 0)
        #expect(bytes.count == 4 << 20 && bytes.allSatisfy { $0 == 0x11 })
    }

    /// On a host with many locks the pool's holder is still named: with 200 more `flock`s taken
    /// after the pool's, `/proc/locks` runs past one page, and Foundation's `String(contentsOfFile:)`
    /// read only that page (`ProcFile` reads to the end).
    @Test func theHolderIsNamedAmongHundredsOfLocks() throws {
        let pool = try TestPool.withOrigin("vm", size: "4M")
        let holder = try PoolLockHolder(pool: pool.path, seconds: 30)
        defer { withExtendedLifetime(holder) {} }
        try FileManager.default.createDirectory(atPath: pool.file("locks"), withIntermediateDirectories: true)
        let others = Process()
        others.executableURL = URL(fileURLWithPath: "/bin/bash")
        others.arguments = ["-c", #"for i in $(seq 200); do exec {fd}>"$0/f$i"; flock $fd; done; echo ready; exec sleep 30"#, pool.file("locks")]
        let ready = Pipe()
        others.standardOutput = ready
        try others.run()
        defer { kill(others.processIdentifier, SIGKILL); others.waitUntilExit() }
        _ = ready.fileHandleForReading.readData(ofLength: 6)
        #expect((ProcFile.text("/proc/locks")?.utf8.count ?? 0) > 4096, "more locks than one page lists")
        let refused = try pool.run("status", "--wait", "0")
        #expect(refused.status == 1)
        #expect(refused.stderr.wholeMatch(of: /snapvol: error: pool \S+ is in use by process [0-9]+\n/) != nil, "\(refused.stderr)")
    }

    /// A command holding the pool for long (a dump) applies the pool's autoextend settings, as
    /// `serve` and the TUI do: writes forwarded to it that fill a COW past the threshold grow it.
    @Test func aCommandHoldingThePoolAutoextends() throws {
        let pool = try TestPool.withOrigin("vm", size: "16M", pattern: "0x11")
        try pool.ok("snapshot", "create", "s", "--origin", "vm", "--cow", pool.file("s.cow"), "--cow-size", "4M")
        try pool.ok("pool", "settings", "--autoextend-threshold", "50", "--autoextend-percent", "100")
        let (holder, output) = try Self.blockedRead(pool, "vm", "16M")
        try pool.ok("io", "write", "vm", "0", "3M", "--pattern", "0x22")
        let deadline = Date().addingTimeInterval(15)
        func cowBytes() -> UInt64 { (try? FileManager.default.attributesOfItem(atPath: pool.file("s.cow"))[.size] as? UInt64) ?? 0 }
        while cowBytes() == 4 << 20, Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
        #expect(cowBytes() == 8 << 20)
        #expect(holder.isRunning, "grown while the dump still held the pool")
        #expect(try pool.ok("events").text.contains("autoextended snapshot s to 8 MiB"))
        _ = output.fileHandleForReading.readDataToEndOfFile()
        holder.waitUntilExit()
        #expect(holder.terminationStatus == 0)
        #expect(try pool.snapshotStatus("s")?["state"] as? String == "active")
    }

    /// `serve`, stopped while it runs a command forwarded from elsewhere, lets it finish within
    /// `--stop-grace` (default 30 s). Past the grace, or on a second SIGTERM, it cuts it off, and
    /// the command's client says so in one line and exits 1.
    @Test(arguments: ["finishes", "grace ends", "second signal"])
    func serveLetsForwardedCommandsFinishWithinItsGrace(_ ending: String) throws {
        let pool = try TestPool.withOrigin("vm", size: "64M", pattern: "0x11")
        let server = try ServeProcess(pool: pool, extra: ending == "grace ends" ? ["--stop-grace", "1"] : [])
        let forwarded = Process()
        forwarded.executableURL = URL(fileURLWithPath: SnapvolBinary.path)
        forwarded.arguments = ["io", "read", "vm", "0", "64M", "--pool", pool.path]
        let (output, errors) = (Pipe(), Pipe())
        forwarded.standardOutput = output
        forwarded.standardError = errors
        try forwarded.run()
        // Running in the server: its first bytes came, and the rest waits for this test to read.
        var bytes = output.fileHandleForReading.readData(ofLength: 1 << 16)
        server.signal()
        try server.waitForLog(containing: "finishing 1 command forwarded by other snapvol processes")
        if ending == "second signal" { server.signal() }
        if ending == "finishes" {
            Thread.sleep(forTimeInterval: 1)
            #expect(server.isRunning, "the server waits for the command it runs")
        }
        if ending == "grace ends" { try server.waitForLog(containing: "cut off 1 command") }
        bytes += output.fileHandleForReading.readDataToEndOfFile()
        forwarded.waitUntilExit()
        let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(server.stop() == 0)
        if ending == "finishes" {
            #expect(forwarded.terminationStatus == 0 && stderr.isEmpty, "\(stderr)")
            #expect(bytes.count == 64 << 20 && bytes.allSatisfy { $0 == 0x11 })
        } else {
            #expect(forwarded.terminationStatus == 1)
            #expect(bytes.count < 64 << 20)
            #expect(stderr.hasPrefix("snapvol: error: the pool's holder stopped before this command finished; ")
                    && stderr.split(separator: "\n").count == 1, "\(stderr)")
            #expect(try server.waitForLog(containing: "cut off 1 command forwarded by other snapvol processes").isEmpty == false)
        }
    }

    /// What holds the pool, as its control socket answers: a command, which others wait for
    /// (a server or a TUI started meanwhile does not attach to it or give up), or a server.
    @Test func aHolderSaysWhatItIs() throws {
        let pool = try TestPool.withOrigin("vm", size: "4M", pattern: "0x11")
        func role() throws -> String {
            let client = try RawSocket(path: pool.file("pool/control.sock"))
            client.send(Array(#"{"argv": ["---holder-role"], "cwd": "/"}"#.utf8) + [10])
            let frame = client.receive(5)
            let length = frame.count == 5 ? Int(frame[1]) << 24 | Int(frame[2]) << 16 | Int(frame[3]) << 8 | Int(frame[4]) : 0
            return String(decoding: client.receive(length), as: UTF8.self)
        }
        let (reader, output) = try Self.blockedRead(pool, "vm", "4M")
        #expect(try role() == "command")
        let server = Process()
        server.executableURL = URL(fileURLWithPath: SnapvolBinary.path)
        server.arguments = ["serve", "--pool", pool.path, "--socket", pool.file("nbd.sock")]
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer { if server.isRunning { server.terminate(); server.waitUntilExit() } }
        Thread.sleep(forTimeInterval: 1)
        #expect(server.isRunning, "a server waits for a command holding the pool")
        _ = output.fileHandleForReading.readDataToEndOfFile()
        reader.waitUntilExit()
        let deadline = Date().addingTimeInterval(20)
        while (try? role()) != "server", Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
        #expect(try role() == "server", "then serves the pool")
    }
}
