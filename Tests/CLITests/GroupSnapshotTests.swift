import Foundation
import Synchronization
import Testing
import TestSupport

/// `snapshot create` with several names: a consistent group of snapshots taken at one instant.
@Suite(.mayBlock) struct GroupSnapshotTests {
    /// A pool with two 1 MiB origins, `a` (0x0A) and `b` (0x0B).
    static func pool() throws -> TestPool {
        let pool = try TestPool()
        try pool.ok("pool", "init")
        for name in ["a", "b"] {
            try pool.ok("origin", "add", name, "--path", pool.file("\(name).img"), "--size", "1M")
            try pool.ok("io", "write", name, "0", "1M", "--pattern", name == "a" ? "0x0A" : "0x0B")
        }
        return pool
    }

    /// Both snapshots are made, keep their origins' data, and are recorded.
    @Test func aGroupIsCreatedAndKeepsEachOrigin() throws {
        let pool = try Self.pool()
        let before = Date().timeIntervalSince1970.rounded(.down)
        let made = try pool.ok("snapshot", "create", "a1", "b1", "--origin", "a", "--origin", "b",
                               "--cow", pool.file("a1.cow"), "--cow", pool.file("b1.cow"), "--chunk-size", "4K")
        let after = Date().timeIntervalSince1970.rounded(.up)
        #expect(made.text == "created snapshots a1 of a, b1 of b at one instant\n")
        // One instant, in the registry too: both members carry the same time, that of the command.
        let created = try #require(try pool.snapshotStatus("a1")?["created"] as? String)
        #expect(try pool.snapshotStatus("b1")?["created"] as? String == created)
        let taken = try #require(try? Date(created, strategy: .iso8601)).timeIntervalSince1970
        #expect(taken >= before && taken <= after, "\(created)")
        try pool.ok("io", "write", "a", "0", "64K", "--pattern", "0x1A")
        try pool.ok("io", "write", "b", "0", "64K", "--pattern", "0x1B")
        #expect(try pool.ok("io", "read", "a1", "0", "64K").stdout.allSatisfy { $0 == 0x0A })
        #expect(try pool.ok("io", "read", "b1", "0", "64K").stdout.allSatisfy { $0 == 0x0B })
        #expect(try pool.snapshotStatus("a1")?["origin"] as? String == "a")
        #expect(try pool.snapshotStatus("b1")?["chunk_size"] as? Int == 4096)
        #expect(try pool.snapshotStatus("a1")?["taken_with"] as? [String] == ["b1"])
        #expect(try pool.snapshotStatus("b1")?["taken_with"] as? [String] == ["a1"])
        try pool.ok("snapshot", "create", "alone", "--origin", "a", "--cow", pool.file("alone.cow"))
        #expect(try pool.snapshotStatus("alone")?.keys.contains("taken_with") == false)
        try pool.ok("snapshot", "delete", "b1")
        #expect(try pool.snapshotStatus("a1")?.keys.contains("taken_with") == false, "a deleted member leaves the group")
    }

    /// `--all-origins` snapshots every active origin as `NAME-<origin>`, COW files in `--cow-dir`
    /// (an inactive origin is left out); mixing it with `--origin` is refused.
    @Test func allOriginsMakesAGroupOfEveryActiveOrigin() throws {
        let pool = try Self.pool()
        try pool.ok("origin", "add", "gone", "--path", pool.file("gone.img"), "--size", "1M")
        try FileManager.default.removeItem(atPath: pool.file("gone.img"))
        let cows = pool.file("cows")
        try FileManager.default.createDirectory(atPath: cows, withIntermediateDirectories: true)
        let made = try pool.ok("snapshot", "create", "weekly", "--all-origins", "--cow-dir", cows)
        #expect(made.text == "created snapshots weekly-a of a, weekly-b of b at one instant\n")
        #expect(try pool.snapshotStatus("weekly-a")?["cow_path"] as? String == "\(cows)/weekly-a.cow")
        #expect(try pool.snapshotStatus("weekly-b")?["taken_with"] as? [String] == ["weekly-a"])
        #expect(try pool.snapshotStatus("weekly-gone") == nil)
        try RefusalTests.expectRefused(pool, ["snapshot", "create", "w2", "--all-origins", "--origin", "a", "--cow", pool.file("x.cow")],
                                       mentioning: "--all-origins takes one name and no --origin or --cow")
        try RefusalTests.expectRefused(pool, ["snapshot", "create", "w2", "--origin", "a", "--cow", pool.file("x.cow"), "--cow-dir", cows],
                                       mentioning: "give --cow-dir or --cow, not both")
        try RefusalTests.expectRefused(pool, ["snapshot", "create", "weekly", "--all-origins"], mentioning: "'weekly-a' already exists")
    }

    /// Without --cow, each COW is NAME.cow in the pool directory or in --cow-dir (as the TUI
    /// and --all-origins place them), for one snapshot and for a group; such a file is
    /// snapvol's own and goes with its snapshot.
    @Test func withoutCowEachCowIsNamedAfterItsSnapshot() throws {
        let pool = try Self.pool()
        try pool.ok("snapshot", "create", "plain", "--origin", "a")
        #expect(try pool.snapshotStatus("plain")?["cow_path"] as? String == "\(pool.path)/plain.cow")
        let cows = pool.file("cows")
        try FileManager.default.createDirectory(atPath: cows, withIntermediateDirectories: true)
        let group = try pool.ok("snapshot", "create", "ga", "gb", "--origin", "a", "--origin", "b", "--cow-dir", cows)
        #expect(group.text == "created snapshots ga of a, gb of b at one instant\n")
        #expect(try pool.snapshotStatus("gb")?["cow_path"] as? String == "\(cows)/gb.cow")
        #expect(FileManager.default.fileExists(atPath: "\(cows)/ga.cow"))
        try pool.ok("snapshot", "delete", "plain", "ga")
        #expect(!FileManager.default.fileExists(atPath: "\(pool.path)/plain.cow") && !FileManager.default.fileExists(atPath: "\(cows)/ga.cow"))
    }

    /// `--cow-size 50%`: each new COW is that share of its own origin (whole chunks), as LVM's
    /// `-l 50%ORIGIN`; a share out of range is refused with one line, nothing made.
    @Test func aCowSizeInPercentIsAShareOfEachOrigin() throws {
        let pool = try Self.pool()
        try pool.ok("origin", "add", "big", "--path", pool.file("big.img"), "--size", "4M")
        try pool.ok("snapshot", "create", "half", "--all-origins", "--cow-size", "50%", "--chunk-size", "4K")
        #expect(try pool.snapshotStatus("half-a")?["cow_total_bytes"] as? Int == 512 << 10)
        #expect(try pool.snapshotStatus("half-big")?["cow_total_bytes"] as? Int == 2 << 20)
        #expect(try pool.ok("snapshot", "extend", "half-big", "--cow-size", "75%").text == "extended snapshot half-big to 3 MiB\n")
        #expect(try pool.snapshotStatus("half-big")?["cow_total_bytes"] as? Int == 3 << 20)
        for size in ["0%", "x%", "1001%"] {
            try RefusalTests.expectRefused(pool, ["snapshot", "create", "s", "--origin", "a", "--cow", pool.file("s.cow"), "--cow-size", size],
                                           mentioning: "invalid --cow-size '\(size)': a share of the origin from above 0% to 1000%")
        }
    }

    /// Refusals found by the checks change nothing (one line, exit 1).
    @Test func aGroupIsCheckedWhole() throws {
        let pool = try Self.pool()
        try pool.ok("snapshot", "create", "old", "--origin", "b", "--cow", pool.file("old.cow"))
        let cases: [([String], String)] = [
            (["n1", "--origin", "a", "--cow", pool.file("x.cow"), "--cow", pool.file("y.cow")],
             "1 name but 1 --origin and 2 --cows: give one --origin per name, and one --cow per name or none, in order"),
            (["n1", "n2", "--origin", "a", "--origin", "b", "--cow", pool.file("x.cow"), "--cow", pool.file("old.cow")],
             "\(pool.file("old.cow")) is already used by 'old'"),
            (["n1", "n2", "--origin", "a", "--origin", "nope", "--cow", pool.file("x.cow"), "--cow", pool.file("y.cow")], "'nope'"),
            (["n1", "n1", "--origin", "a", "--origin", "b", "--cow", pool.file("x.cow"), "--cow", pool.file("y.cow")],
             "snapshot name 'n1' is given twice"),
            (["n1", "n2", "--origin", "a", "--origin", "b", "--cow", pool.file("x.cow"), "--cow", pool.file("x.cow")],
             "COW \(pool.file("x.cow")) is given twice"),
        ]
        for (arguments, message) in cases {
            try RefusalTests.expectRefused(pool, ["snapshot", "create"] + arguments, mentioning: message)
        }
    }

    /// `snapshot delete` with several names checks them all first: an unknown one deletes none;
    /// then the group goes in one command, with the COW files snapvol made.
    @Test func aGroupIsDeletedInOneCommandOrNotAtAll() throws {
        let pool = try Self.pool()
        try pool.ok("snapshot", "create", "a1", "b1", "--origin", "a", "--origin", "b",
                    "--cow", pool.file("a1.cow"), "--cow", pool.file("b1.cow"))
        try RefusalTests.expectRefused(pool, ["snapshot", "delete", "a1", "nope"], mentioning: "'nope'")
        try RefusalTests.expectRefused(pool, ["snapshot", "delete", "a1", "a"], mentioning: "'a' is an origin")
        try RefusalTests.expectRefused(pool, ["snapshot", "delete", "a1", "a1"], mentioning: "a snapshot is named twice")
        #expect(try pool.ok("snapshot", "delete", "a1", "b1").text == "deleted snapshots a1, b1\n")
        #expect(try pool.snapshotStatus("a1") == nil && pool.snapshotStatus("b1") == nil)
        #expect(!FileManager.default.fileExists(atPath: pool.file("a1.cow")) && !FileManager.default.fileExists(atPath: pool.file("b1.cow")))
    }

    /// `snapshot merge` with several names rolls each origin back to its snapshot; all are
    /// checked first, so an unknown name, or two snapshots of one origin, merge none.
    @Test func aGroupIsMergedInOneCommandOrNotAtAll() throws {
        let pool = try Self.pool()
        try pool.ok("snapshot", "create", "a1", "b1", "--origin", "a", "--origin", "b",
                    "--cow", pool.file("a1.cow"), "--cow", pool.file("b1.cow"), "--chunk-size", "4K")
        try pool.ok("snapshot", "create", "a2", "--origin", "a", "--cow", pool.file("a2.cow"))
        try pool.ok("io", "write", "a", "0", "128K", "--pattern", "0x1A")
        try pool.ok("io", "write", "b", "64K", "128K", "--pattern", "0x1B")
        try RefusalTests.expectRefused(pool, ["snapshot", "merge", "a1", "nope", "--no-progress"], mentioning: "'nope'")
        try RefusalTests.expectRefused(pool, ["snapshot", "merge", "a1", "a2", "--no-progress"],
                                       mentioning: "two of the snapshots belong to origin 'a': merge them one at a time")
        let merged = try pool.ok("snapshot", "merge", "a1", "b1", "--no-progress")
        #expect(merged.text == "merged snapshots a1, b1 into their origins\n")
        #expect(try pool.ok("io", "read", "a", "0", "1M").stdout.allSatisfy { $0 == 0x0A })
        #expect(try pool.ok("io", "read", "b", "0", "1M").stdout.allSatisfy { $0 == 0x0B })
        #expect(try pool.snapshotStatus("a1") == nil && pool.snapshotStatus("b1") == nil)
        #expect(try pool.snapshotStatus("a2") != nil, "the other snapshot of a stays")
    }

    /// A failure after the first COW file was made (the second cannot be created) leaves nothing:
    /// the first file is removed, the registry and the origins are as they were.
    @Test func aGroupThatFailsHalfwayLeavesNothing() throws {
        let pool = try Self.pool()
        let before = fingerprint([pool.dir.path])
        let result = try pool.run("snapshot", "create", "n1", "n2", "--origin", "a", "--origin", "b",
                                  "--cow", pool.file("n1.cow"), "--cow", pool.file("missing/n2.cow"))
        #expect(result.status == 1)
        #expect(result.stderr == "snapvol: error: \(pool.file("missing/n2.cow")): create failed: No such file or directory\n")
        #expect(fingerprint([pool.dir.path]) == before)
        #expect(try pool.snapshotStatus("n1") == nil)
    }

    /// Over NBD, a client writes an increasing number to origin `a` and, once acknowledged, to
    /// the same block of `b`, while `snapshot create` (forwarded to the server) takes a group
    /// of both: in the snapshots, `b`'s newest number is `a`'s or the one before.
    @Test func aGroupTakenUnderWritesOverNBDIsConsistent() throws {
        let pool = try Self.pool()
        for name in ["a", "b"] { try pool.ok("io", "write", name, "0", "1M", "--pattern", "0") }
        let server = try ServeProcess(pool: pool)
        var midStream = 0
        for round in 0..<3 {
            let writer = try DependentWriter(socket: server.socket)
            Thread.sleep(forTimeInterval: 0.05 * Double(round + 1))
            try pool.ok("snapshot", "create", "a\(round)", "b\(round)", "--origin", "a", "--origin", "b",
                        "--cow", pool.file("a\(round).cow"), "--cow", pool.file("b\(round).cow"), "--chunk-size", "4K")
            let written = writer.stop()
            let a = try Self.newest(in: "a\(round)", pool), b = try Self.newest(in: "b\(round)", pool)
            #expect(b == a || b == a - 1, "round \(round): a's snapshot holds \(a), b's \(b)")
            if a > 0 && a < written { midStream += 1 }
        }
        #expect(midStream > 0, "the snapshots must fall between writes")
        #expect(server.stop() == 0)
    }

    /// The newest number in the first 16 blocks of `volume`.
    static func newest(in volume: String, _ pool: TestPool) throws -> UInt64 {
        let bytes = [UInt8](try pool.ok("io", "read", volume, "0", "64K").stdout)
        return (0..<DependentWriter.blocks).map { block in
            bytes[block * 4096..<block * 4096 + 8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        }.max() ?? 0
    }
}

/// Writes 1, 2, 3… over NBD, each to block `n % 16` of export `a` and then, once acknowledged,
/// of export `b`, on a thread of its own until stopped.
final class DependentWriter: Sendable {
    static let blocks = 16
    private let stopping = Atomic<Bool>(false)
    private let last = Mutex<UInt64>(0)
    private let done = DispatchSemaphore(value: 0)

    init(socket: String) throws {
        let (a, _) = try RawSocket.transmitting(socket, export: "a")
        let (b, _) = try RawSocket.transmitting(socket, export: "b")
        let clients = UncheckedClients(a: a, b: b)
        Thread.detachNewThread { [self] in
            var number: UInt64 = 0
            writing: while !stopping.load(ordering: .relaxed) {
                number += 1
                let offset = UInt64(Int(number) % Self.blocks * 4096)
                let data = withUnsafeBytes(of: number.littleEndian) { Array($0) } + [UInt8](repeating: 0, count: 4088)
                for client in [clients.a, clients.b] {
                    client.send(NBDWire.request(type: 1, handle: number, offset: offset, length: 4096) + data)
                    guard client.receive(16) == NBDWire.simpleReply(error: 0, handle: number) else { break writing }
                }
                last.withLock { $0 = number }
            }
            done.signal()
        }
    }

    /// Stops the writer; returns the last number it wrote to both exports.
    func stop() -> UInt64 {
        stopping.store(true, ordering: .relaxed)
        done.wait()
        return last.withLock { $0 }
    }
}

/// The writer's two sockets, handed to its thread.
// @unchecked Sendable: after `init` hands them over, only the writer's thread uses the sockets.
private final class UncheckedClients: @unchecked Sendable {
    let a: RawSocket
    let b: RawSocket

    init(a: RawSocket, b: RawSocket) {
        self.a = a
        self.b = b
    }
}
