import Foundation
import Testing
import TestSupport

/// The TUI in a real terminal: tmux runs the built binary; keys go in with send-keys and the
/// screen comes back with capture-pane. Needs tmux (always in CI).
@Suite(.mayBlock, .serialized, .enabled(if: Environment.canRun(commands: ["tmux"])))
struct TerminalTests {
    static var binary: String { SnapvolBinary.path }

    /// A pool with origin `vm` (8 MiB) and snapshot `base`.
    static func pool() throws -> TestPool { try TestPool.withVM(snapshot: "base", "--chunk-size", "4K") }

    static let environment = ["TERM": "tmux-256color", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"]

    /// `snapvol tui` on `pool` in a tmux session, once it shows the snapshot `base`.
    static func tui(_ pool: TestPool) throws -> TmuxSession {
        let session = try TmuxSession(command: "\(binary) tui --pool \(pool.path)", environment: environment)
        try session.waitFor(text: "└ base")
        return session
    }

    @Test func demoShowsTheTreeAndFiguresMove() throws {
        let dir = try TemporaryDirectory(prefix: "snapvol-demo")
        let session = try TmuxSession(command: "\(Self.binary) demo --dir \(dir.path) --rate 4M", environment: Self.environment)
        let first = try session.waitFor("both snapshots with exceptions") { screen in
            screen.contains("└ before-upgrade") && screen.contains("└ hourly") && Self.exceptions(in: screen, of: "hourly") ?? 0 > 0
        }
        #expect(first.contains("vm-disk"))
        let before = Self.exceptions(in: first, of: "before-upgrade") ?? 0
        try session.waitFor("exceptions growing", timeout: 20) { (Self.exceptions(in: $0, of: "before-upgrade") ?? 0) > before }
        try session.press("q", until: "SESSION-ENDED")
        #expect(try !session.alternateScreen(), "q restores the terminal")
    }

    /// The EXCEPT column of snapshot `name`: the fields are `└ NAME SIZE unit CHUNK unit EXCEPT ...`.
    static func exceptions(in screen: String, of name: String) -> Int? {
        guard let line = screen.split(separator: "\n").first(where: { $0.contains("└ \(name) ") }) else { return nil }
        let fields = line.split(separator: " ")
        guard let at = fields.firstIndex(where: { $0 == name }), at + 5 < fields.count else { return nil }
        return Int(fields[at + 5])
    }

    @Test func newSnapshotFormCreatesWhatStatusThenLists() throws {
        let pool = try Self.pool()
        let session = try Self.tui(pool)
        try session.press("n", until: "New snapshot")
        try session.type("fromtui")
        try session.keys("Tab", "Tab", "Tab")
        try session.type("2M")
        try session.press("Enter", until: "created snapshot fromtui")
        try session.waitFor(text: "└ fromtui")
        try session.press("q", until: "SESSION-ENDED")
        let status = try #require(try pool.snapshotStatus("fromtui"))
        #expect(status["cow_total_bytes"] as? Int == 2 << 20)
        #expect(status["cow_path"] as? String == "\(pool.path)/fromtui.cow")
    }

    /// `N` opens the form with every active origin: one name makes a snapshot of each at one
    /// instant.
    /// Deleting or merging one of them offers its group (`a`), which goes in one command.
    @Test(arguments: [("d", "Delete snapshot nightly-db? (y/N, a: also nightly-vm)", "deleted snapshots nightly-db, nightly-vm"),
                      ("m", "Merge nightly-db into db? (rolls back) (y/N, a: also nightly-vm)", "merged nightly-db, nightly-vm into their origins")])
    func groupFormSnapshotsEveryOriginAtOnceAndDeleteOrMergeOffersTheGroup(key: String, prompt: String, done: String) throws {
        let pool = try Self.pool()
        try pool.ok("origin", "add", "db", "--path", pool.file("db.img"), "--size", "4M")
        try pool.ok("origin", "add", "gone", "--path", pool.file("gone.img"), "--size", "4M")
        try FileManager.default.removeItem(atPath: pool.file("gone.img"))   // inactive: left out of the group
        let session = try Self.tui(pool)
        try session.press("N", until: "New snapshot")
        try session.type("nightly")
        let form = try session.waitFor(text: "At one instant: nightly-vm, nightly-db")
        #expect(!form.contains("nightly-gone"), "an inactive origin is not offered")
        try session.press("Enter", until: "created snapshots nightly-vm, nightly-db at one instant")
        try session.waitFor(text: "└ nightly-db")
        // Rows by name: db, └ nightly-db, vm, … : one step down selects nightly-db.
        try session.press("j", until: "ago, at one instant with nightly-vm")
        try session.waitFor(text: "origin db ")
        try session.waitFor(text: "COW \(pool.path)/nightly-db.cow")
        try session.press(key, until: prompt)
        try session.press("a", until: done)
        try session.press("q", until: "SESSION-ENDED")
        #expect(try pool.snapshotStatus("nightly-vm") == nil && pool.snapshotStatus("nightly-db") == nil)
        #expect(try pool.snapshotStatus("base") != nil)
    }

    @Test func badFormInputShowsInlineErrorsAndCreatesNothing() throws {
        let pool = try Self.pool()
        let session = try Self.tui(pool)
        try session.keys("n")
        try session.type("base")
        try session.waitFor(text: "'base' already exists")
        try session.keys("Tab", "Tab", "Tab")
        try session.type("8K")
        try session.press("Enter", until: "too small")
        try session.press("Escape", until: "cancelled")
        try session.press("q", until: "SESSION-ENDED")
        let before = fingerprint([pool.dir.path])
        #expect(try pool.snapshotStatus("base") != nil)
        let origins = try pool.status()["origins"] as! [[String: Any]]
        #expect((origins[0]["snapshots"] as! [[String: Any]]).count == 1)
        #expect(fingerprint([pool.dir.path]).keys.sorted() == before.keys.sorted())
        #expect(!FileManager.default.fileExists(atPath: "\(pool.path)/base.cow"))
    }

    @Test func deleteAsksAndThenDeletes() throws {
        let pool = try Self.pool()
        let session = try Self.tui(pool)
        try session.press("j", "d", until: "Delete snapshot base? (y/N)")
        try session.press("n", until: "delete cancelled")
        try session.press("d", "y", until: "deleted snapshot base")
        try session.press("q", until: "SESSION-ENDED")
        #expect(try pool.snapshotStatus("base") == nil)
    }

    /// `e` on a snapshot extends its COW; on an origin it resizes it, refused while the origin
    /// has snapshots (the controller's line is shown), done once they are gone.
    @Test func extendGrowsACowAndResizeGrowsAnOriginWithoutSnapshots() throws {
        let pool = try Self.pool()
        let session = try Self.tui(pool)
        try session.press("j", "e", until: "new COW size for base: _")
        try session.type("32M")
        try session.press("Enter", until: "extended base to 32 MiB")
        #expect(try FileManager.default.attributesOfItem(atPath: pool.file("base.cow"))[.size] as? UInt64 == 32 << 20)
        // A share of the 8 MiB origin, as `snapshot extend --cow-size 500%` takes it.
        try session.press("e", until: "new COW size for base: _")
        try session.type("500%")
        try session.press("Enter", until: "extended base to 40 MiB")
        try session.press("k", "e", until: "new size for origin vm (now 8 MiB): _")
        try session.type("16M")
        try session.press("Enter", until: "a snapshot keeps its origin's size")
        try session.press("j", "d", "y", until: "deleted snapshot base")
        try session.press("k", "e", until: "new size for origin vm (now 8 MiB): _")
        try session.type("16M")
        try session.press("Enter", until: "resized vm to 16 MiB")
        try session.waitFor(text: "16 MiB")
        try session.press("q", until: "SESSION-ENDED")
        #expect(try FileManager.default.attributesOfItem(atPath: pool.file("vm.img"))[.size] as? UInt64 == 16 << 20)
    }

    /// `r` renames the selected snapshot or origin; Esc cancels; the tree and the registry
    /// follow, and the renamed volume stays selected where its new name sorts it.
    @Test func renameFromTheKeyboard() throws {
        let pool = try Self.pool()
        try pool.ok("origin", "add", "mm", "--path", pool.file("mm.img"), "--size", "1M")
        let session = try Self.tui(pool)
        try session.press("j", "j", "r", until: "new name for base: _")
        try session.press("Escape", until: "rename cancelled")
        try session.press("r", until: "new name for base: _")
        try session.type("kept")
        try session.press("Enter", until: "renamed base to kept")
        try session.waitFor(text: "└ kept")
        // The origin vm, renamed to aa, sorts first; the selection follows it there.
        try session.press("k", "r", until: "new name for origin vm: _")
        try session.type("aa")
        try session.press("Enter", until: "renamed vm to aa")
        try session.press("r", until: "new name for origin aa: _")
        try session.press("Escape", "q", until: "SESSION-ENDED")
        #expect(try pool.snapshotStatus("kept") != nil && pool.snapshotStatus("base") == nil)
        #expect(try (pool.status()["origins"] as? [[String: Any]])?.compactMap { $0["name"] as? String } == ["aa", "mm"])
    }

    /// A snapshot whose origin was written outside snapvol shows `? SUSPECT`; `t` asks, then
    /// clears the mark (`snapshot trust`), and refuses on anything but a suspect snapshot.
    @Test func trustASuspectSnapshotFromTheKeyboard() throws {
        let pool = try Self.pool()
        let image = try FileHandle(forWritingTo: URL(fileURLWithPath: pool.file("vm.img")))
        try image.write(contentsOf: [0x01])
        try image.close()
        let session = try Self.tui(pool)
        try session.waitFor(text: "? SUSPECT")
        try session.press("t", until: "select a suspect snapshot to trust")
        try session.press("j", "t", until: "Trust base? Only if the change found (see its detail) lost nothing. (y/N)")
        try session.press("n", until: "trust cancelled")
        #expect(try session.screen().contains("? SUSPECT"))
        try session.press("t", "y", until: "trusted snapshot base: no longer suspect")
        try session.waitFor("the mark gone") { !$0.contains("? SUSPECT") }
        try session.press("q", until: "SESSION-ENDED")
        #expect(try pool.snapshotStatus("base")?["suspect"] == nil)
    }

    /// A snapshot whose COW was moved shows inactive; `l` asks where its COW is now and
    /// relocates it (`snapshot relocate`), which only an inactive volume accepts.
    @Test func relocateAnInactiveSnapshotFromTheKeyboard() throws {
        let pool = try Self.pool()
        try pool.ok("io", "write", "vm", "0", "64K", "--pattern", "0x22")
        try FileManager.default.moveItem(atPath: pool.file("base.cow"), toPath: pool.file("moved.cow"))
        let session = try Self.tui(pool)
        try session.press("l", until: "only an inactive volume is relocated: vm is active")
        try session.press("j", "l", until: "where the COW of base is now: _")
        try session.press("Escape", until: "relocate cancelled")
        try session.press("l", until: "where the COW of base is now: _")
        try session.type(pool.file("moved.cow"))
        try session.press("Enter", until: "relocated base to \(pool.file("moved.cow"))")
        try session.waitFor("base active again") { $0.split(separator: "\n").contains { $0.contains("└ base") && $0.contains("active") && !$0.contains("inactive") } }
        try session.press("q", until: "SESSION-ENDED")
        #expect(try pool.snapshotStatus("base")?["cow_path"] as? String == pool.file("moved.cow"))
        #expect(try pool.ok("io", "read", "base", "0", "64K").stdout.allSatisfy { $0 == 0 }, "the snapshot kept the origin as it was")
    }

    /// While the TUI drives the pool, commands from elsewhere (a cron job) go through it instead
    /// of finding the pool locked, and it shows their effect; it removes its socket on quitting.
    @Test func commandsRunElsewhereGoThroughTheTUI() throws {
        let pool = try Self.pool()
        let session = try Self.tui(pool)
        try pool.ok("snapshot", "create", "fromcron", "--origin", "vm", "--cow", pool.file("fromcron.cow"))
        try session.waitFor(text: "└ fromcron")
        try session.press("j", "j", until: "fromcron: created")
        #expect(try pool.snapshotStatus("fromcron")?["state"] as? String == "active")
        #expect(FileManager.default.fileExists(atPath: pool.file("pool/control.sock")))
        try session.press("q", until: "SESSION-ENDED")
        #expect(!FileManager.default.fileExists(atPath: pool.file("pool/control.sock")))
        #expect(try pool.snapshotStatus("fromcron") != nil, "the pool is free again")
    }

    /// While the TUI drives the pool, the pool's autoextend settings apply (as under `serve`),
    /// and the event pane says what was grown.
    @Test func theTUIAutoextendsByThePoolsSettings() throws {
        let pool = try TestPool.withVM(snapshot: "base", "--cow-size", "1M")
        try pool.ok("pool", "settings", "--autoextend-threshold", "50", "--autoextend-percent", "100")
        let session = try Self.tui(pool)
        try pool.ok("io", "write", "vm", "0", "768K", "--pattern", "0x61")
        try session.press("j", until: "autoextended snapshot base to 2 MiB")
        try session.press("q", until: "SESSION-ENDED")
        #expect(try pool.snapshotStatus("base")?["cow_total_bytes"] as? Int == 2 << 20)
    }

    @Test func readOnlyRefusesEveryChangeAndTouchesNothing() throws {
        let pool = try Self.pool()
        try pool.ok("io", "write", "vm", "0", "64K", "--pattern", "3")
        let files = [pool.dir.path]
        let before = fingerprint(files)
        let mtimes = Self.mtimes(files)
        let session = try TmuxSession(command: "\(Self.binary) tui --read-only --pool \(pool.path)", environment: Self.environment)
        let screen = try session.waitFor(text: "└ base")
        #expect(screen.contains("READ-ONLY"))
        #expect(screen.contains("16"), "exceptions read from the COW on disk")
        try session.keys("j")
        for key in ["n", "d", "m", "e", "r"] {
            try session.press(key, until: "read-only mode")
            try session.keys("Escape")
        }
        try session.press("?", until: "[disabled: read-only]")
        try session.press("x", "q", until: "SESSION-ENDED")
        #expect(fingerprint(files) == before)
        #expect(Self.mtimes(files) == mtimes)
    }

    /// A monitor needs no lock, and shows the events of the pool's event log (here, the
    /// snapshot's creation by an earlier command).
    @Test func monitorWorksWhileAnotherProcessOwnsThePool() throws {
        let pool = try Self.pool()
        let holder = try PoolLockHolder(pool: pool.path)
        defer { withExtendedLifetime(holder) {} }
        let session = try TmuxSession(command: "\(Self.binary) monitor --pool \(pool.path)", environment: Self.environment)
        try session.waitFor(text: "└ base")
        try session.press("j", until: "base: created (COW \(pool.file("base.cow"))")
        try session.press("q", until: "SESSION-ENDED")
    }

    @Test func resizeRedrawsAndTooSmallSaysSo() throws {
        let pool = try Self.pool()
        let session = try Self.tui(pool)
        try session.resize(width: 80, height: 24)
        try session.waitFor("redrawn at 80x24") { $0.contains("└ base") && $0.contains("F10Quit") && $0.split(separator: "\n").count <= 24 }
        try session.resize(width: 60, height: 20)
        try session.waitFor(text: "terminal too small")
        try session.resize(width: 120, height: 40)
        try session.waitFor("redrawn at 120x40") { $0.contains("└ base") && $0.contains("WRITE") }
        try session.press("q", until: "SESSION-ENDED")
    }

    @Test func asciiWithoutAUTF8LocaleAndMonochromeTheme() throws {
        let pool = try Self.pool()
        let session = try TmuxSession(command: "\(Self.binary) tui --theme monochrome --pool \(pool.path)",
                                      environment: ["TERM": "vt100", "LANG": "C", "LC_ALL": "C", "NO_COLOR": "1"])
        let screen = try session.waitFor(text: "`-base")
        #expect(!screen.contains("└"))
        try session.press("q", until: "SESSION-ENDED")
    }

    static func mtimes(_ paths: [String]) -> [String: Date] {
        var result: [String: Date] = [:]
        for path in paths {
            for name in (try? FileManager.default.subpathsOfDirectory(atPath: path)) ?? [] {
                let full = "\(path)/\(name)"
                result[full] = (try? FileManager.default.attributesOfItem(atPath: full))?[.modificationDate] as? Date
            }
        }
        return result
    }
}

/// The TUI attached to `snapvol serve` over the control socket.
@Suite(.mayBlock, .serialized, .enabled(if: Environment.canRun(commands: ["tmux"])))
struct AttachedTerminalTests {
    /// `n` (one snapshot) and `N` (a group of every origin) reach the server as one
    /// `snapshot create` command line.
    @Test(arguments: [("n", "viaserver", "created snapshot viaserver", ["viaserver"]),
                      ("N", "g", "created snapshots g-vm, g-db at one instant", ["g-vm", "g-db"])])
    func tuiAttachesToAServerAndCreatesThroughIt(key: String, name: String, done: String, made: [String]) throws {
        let pool = try TerminalTests.pool()
        try pool.ok("origin", "add", "db", "--path", pool.file("db.img"), "--size", "4M")
        let server = try ServeProcess(pool: pool)
        defer { server.stop() }
        let session = try TmuxSession(command: "\(TerminalTests.binary) tui --pool \(pool.path)", environment: TerminalTests.environment)
        try session.waitFor(text: "└ base")
        try session.keys(key)
        try session.type(name)
        try session.press("Enter", until: done)
        try session.waitFor(text: "└ \(made[0])")
        try session.press("q", until: "SESSION-ENDED")
        for snapshot in made { #expect(try pool.snapshotStatus(snapshot) != nil, "\(snapshot)") }
    }

    /// Attached, the detail pane still shows the server's events for the volume and the chunk
    /// map of the selected snapshot (`events` and `io map --cells` through the control socket).
    @Test func anAttachedTUIShowsTheServersEventsAndChunkMap() throws {
        let pool = try TerminalTests.pool()
        let server = try ServeProcess(pool: pool)
        defer { server.stop() }
        try pool.ok("snapshot", "create", "later", "--origin", "vm", "--cow", pool.file("later.cow"), "--chunk-size", "4K",
                    "--cow-size", "8M")
        try pool.ok("io", "write", "vm", "0", "4M", "--pattern", "0x61")
        let session = try TmuxSession(command: "\(TerminalTests.binary) tui --pool \(pool.path)", environment: TerminalTests.environment)
        try session.waitFor(text: "└ later")
        // Rows: vm, └ base, └ later.
        try session.press("j", "j", until: "later: created (COW \(pool.file("later.cow")), chunk 4 KiB)")
        let screen = try session.waitFor(text: "copied out:")
        let map = try #require(screen.split(separator: "\n").first { $0.contains("copied out:") })
        // The first half of the 8 MiB origin was written after the snapshot: full cells, then blank.
        #expect(map.contains("[" + String(repeating: "█", count: 32) + String(repeating: " ", count: 32) + "]"), "\(map)")
        try session.press("q", until: "SESSION-ENDED")
    }

    /// A snapshot an NBD client has open: the detail pane says so, the delete prompt warns that
    /// the client is disconnected, and confirming deletes it (`--force` through the server).
    @Test func deletingASnapshotInUseWarnsAndDisconnectsItsClient() throws {
        let pool = try TerminalTests.pool()
        let server = try ServeProcess(pool: pool)
        defer { server.stop() }
        let (client, replies) = try RawSocket.transmitting(server.socket, export: "base")
        #expect(replies.count == 86)
        let session = try TmuxSession(command: "\(TerminalTests.binary) tui --pool \(pool.path)", environment: TerminalTests.environment)
        try session.waitFor(text: "└ base")
        try session.press("j", until: "open by 1 NBD client")
        try session.press("d", until: "Delete snapshot base, disconnecting 1 NBD client? (y/N)")
        try session.press("y", until: "deleted snapshot base")
        try session.press("q", until: "SESSION-ENDED")
        #expect(client.closedByPeer())
        #expect(try pool.snapshotStatus("base") == nil)
    }

    /// Renaming an origin a client has open, through the server: the prompt warns, and the
    /// rename (`origin rename --force`) disconnects the client.
    @Test func renamingAnOriginInUseWarnsAndGoesThroughTheServer() throws {
        let pool = try TerminalTests.pool()
        let server = try ServeProcess(pool: pool)
        defer { server.stop() }
        let (client, replies) = try RawSocket.transmitting(server.socket, export: "vm")
        #expect(replies.count == 86)
        let session = try TmuxSession(command: "\(TerminalTests.binary) tui --pool \(pool.path)", environment: TerminalTests.environment)
        try session.waitFor(text: "└ base")
        try session.press("r", until: "new name for origin vm (disconnects its NBD clients): _")
        try session.type("web")
        try session.press("Enter", until: "renamed vm to web")
        try session.press("q", until: "SESSION-ENDED")
        #expect(client.closedByPeer())
        #expect(try (pool.status()["origins"] as? [[String: Any]])?.compactMap { $0["name"] as? String } == ["web"])
    }
}

/// Merging from the TUI: confirmation, a progress bar, then the snapshot is gone.
@Suite(.mayBlock, .serialized, .enabled(if: Environment.canRun(commands: ["tmux"])))
struct MergeFromTerminalTests {
    @Test func mergeAsksShowsProgressAndConsumesTheSnapshot() throws {
        let pool = try TerminalTests.pool()
        try pool.ok("io", "write", "vm", "0", "1M", "--pattern", "0x42")
        let session = try TmuxSession(command: "\(TerminalTests.binary) tui --pool \(pool.path)", environment: TerminalTests.environment)
        try session.waitFor(text: "└ base")
        try session.press("j", "m", until: "Merge base into vm?")
        try session.press("y", until: "merged base into its origin")
        try session.press("q", until: "SESSION-ENDED")
        #expect(try pool.snapshotStatus("base") == nil)
        #expect([UInt8](try pool.ok("io", "read", "vm", "0", "2").stdout) == [0, 0])
    }
}
