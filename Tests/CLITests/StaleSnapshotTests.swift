import Foundation
import Testing
import TestSupport
import BlockDevices
@testable import Controller
import Synchronization

/// A snapshot whose COW cannot be opened (a disk not mounted yet, a loop device not attached)
/// is given up before its origin's first write, instead of coming back later as an "active"
/// snapshot that silently shows the origin's newer data.
@Suite(.mayBlock) struct StaleSnapshotTests {
    /// Origin `o` (4 MiB of 0x11) with snapshots `s` and `t`; `s`'s COW moved away.
    static func poolWithAMissingCow() throws -> TestPool {
        let pool = try TestPool.withOrigin("o", size: "4M", pattern: "0x11")
        for name in ["s", "t"] {
            try pool.ok("snapshot", "create", name, "--origin", "o", "--cow", pool.file("\(name).cow"), "--cow-size", "4M")
        }
        try FileManager.default.moveItem(atPath: pool.file("s.cow"), toPath: pool.file("s.away"))
        return pool
    }

    static func state(_ pool: TestPool, _ name: String) throws -> (String?, String?) {
        let snapshot = try pool.snapshotStatus(name)
        return (snapshot?["state"] as? String, snapshot?["reason"] as? String)
    }

    @Test func theFirstWriteGivesUpASnapshotWhoseCowIsMissing() throws {
        let pool = try Self.poolWithAMissingCow()
        let (inactive, warning) = try Self.state(pool, "s")
        #expect(inactive == "inactive")
        #expect(warning?.hasSuffix("; the origin's next write gives it up") == true, "status warns before it happens: \(warning ?? "")")
        #expect(try pool.ok("io", "read", "o", "0", "64K").stdout.allSatisfy { $0 == 0x11 })
        #expect(try Self.state(pool, "s").0 == "inactive", "reads give nothing up")
        let merge = try pool.run("snapshot", "merge", "t")
        #expect(merge.status == 1)
        #expect(merge.stderr == "snapvol: error: origin 'o' has inactive snapshots (s): a merge rewrites the origin, so they would no longer match it; make their COW available, or delete them, first\n")

        try pool.ok("io", "write", "o", "0", "1M", "--pattern", "0x22")
        let (state, reason) = try Self.state(pool, "s")
        #expect(state == "invalid")
        #expect(reason?.hasPrefix("its origin was written while its COW could not be opened (\(pool.file("s.cow")): ") == true, "\(reason ?? "")")
        #expect(try pool.ok("io", "read", "t", "0", "1M").stdout.allSatisfy { $0 == 0x11 }, "the other snapshot kept its data")

        // The COW comes back: still invalid, and invalid on disk too, as the kernel would read it.
        try FileManager.default.moveItem(atPath: pool.file("s.away"), toPath: pool.file("s.cow"))
        #expect(try Self.state(pool, "s").0 == "invalid")
        let check = try #require(try JSONSerialization.jsonObject(with: SnapvolBinary.run(["check", pool.file("s.cow"), "--json"]).stdout)
                                 as? [String: Any])
        #expect(check["valid"] as? Bool == false)
        let read = try pool.run("io", "read", "s", "0", "4K")
        #expect(read.status == 1)
        try pool.ok("snapshot", "delete", "s")
    }

    /// No write while it was missing: the snapshot comes back whole.
    @Test func aCowThatComesBackBeforeAnyWriteIsKept() throws {
        let pool = try Self.poolWithAMissingCow()
        try pool.ok("status")
        _ = try pool.ok("io", "read", "o", "0", "1M")
        try FileManager.default.moveItem(atPath: pool.file("s.away"), toPath: pool.file("s.cow"))
        #expect(try Self.state(pool, "s").0 == "active")
        try pool.ok("io", "write", "o", "0", "1M", "--pattern", "0x22")
        #expect(try pool.ok("io", "read", "s", "0", "1M").stdout.allSatisfy { $0 == 0x11 })
    }

    /// An origin resized outside snapvol (`truncate`, `qemu-img resize`) with a snapshot: the
    /// snapshot is inactive, given up by the first write; put back first, it is kept.
    @Test func anOriginResizedBehindSnapvolsBackIsNotSnapshotAtItsNewSize() throws {
        let pool = try TestPool.withOrigin("o", size: "4M", pattern: "0x11")
        try pool.ok("snapshot", "create", "s", "--origin", "o", "--cow", pool.file("s.cow"), "--cow-size", "4M")
        try Shell.check(["truncate", "-s", "8M", pool.file("o.img")])
        let (state, reason) = try Self.state(pool, "s")
        #expect(state == "inactive")
        let resized = "origin 'o' is 8 MiB but was 4 MiB when 's' was taken (resized outside snapvol): put it back to 4 MiB, or delete the snapshot"
        #expect(reason == resized + "; the origin's next write gives it up")
        // A read-only monitor, which never writes, says the same without the warning.
        let observed = try PoolObserver.status(PoolLocation(directory: pool.path)).snapshot(named: "s")
        #expect(observed?.state == "inactive" && observed?.reason == resized, "\(String(describing: observed))")
        try Shell.check(["truncate", "-s", "4M", pool.file("o.img")])
        #expect(try Self.state(pool, "s").0 == "active")
        try Shell.check(["truncate", "-s", "8M", pool.file("o.img")])
        try pool.ok("io", "write", "o", "6M", "64K", "--pattern", "0x22")
        #expect(try Self.state(pool, "s").0 == "invalid")
    }

    /// Through `serve`, a real client's write (qemu-io over NBD) gives the snapshot up first;
    /// the server's log and events say so as an alarm.
    @Test(.enabled(if: Environment.canRun(commands: ["qemu-io"])))
    func anNBDClientsFirstWriteGivesItUp() throws {
        let pool = try Self.poolWithAMissingCow()
        let server = try ServeProcess(pool: pool)
        try Shell.check(["qemu-io", "-f", "raw", server.uri("o"), "-c", "write -P 0x33 0 64k"])
        #expect(try Self.state(pool, "s").0 == "invalid")
        try server.waitForLog(containing: "snapvol: s: INVALIDATED (its origin was written while its COW could not be opened")
        #expect(try pool.ok("events").text.contains("ALARM s: INVALIDATED"))
        #expect(try pool.ok("io", "read", "t", "0", "64K").stdout.allSatisfy { $0 == 0x11 })
        #expect(server.stop() == 0)
    }

    /// A command saves the copy of the registry it took before a stale mark was made: the mark
    /// stays, for the same snapshot (name and COW) only.
    @Test func aCommandsSaveKeepsStaleMarksMadeMeanwhile() {
        func registry(_ snapshots: [(String, String, String?)]) -> Registry {
            var registry = Registry()
            var origin = OriginRecord(name: "o", path: "/o")
            for (name, cow, stale) in snapshots {
                var record = SnapshotRecord(name: name, cowPath: cow, chunkSize: 4096)
                record.staleReason = stale
                origin.snapshots.append(record)
            }
            registry.origins = [origin]
            return registry
        }
        let current = registry([("s", "/s.cow", "gone"), ("t", "/t.cow", nil), ("u", "/u.cow", "gone too")])
        let commandCopy = registry([("s", "/s.cow", nil), ("t", "/t.cow", nil), ("u", "/other.cow", nil), ("v", "/v.cow", nil)])
        let saved = commandCopy.keepingMarks(of: current)
        #expect(saved.origins[0].snapshots.map(\.staleReason) == ["gone", nil, nil, nil])
        #expect(commandCopy.keepingMarks(of: registry([])) == commandCopy)
    }

    /// The same for suspect marks, and for an origin's stamp cleared before a write: a command's
    /// copy that still has the stamp saves it cleared.
    @Test func aCommandsSaveKeepsSuspectMarksAndClearedStamps() {
        let stamp = WriteStamp.file(.init(modifiedSeconds: 1, modifiedNanoseconds: 2, size: 4096))
        var current = Registry()
        current.origins = [OriginRecord(name: "o", path: "/o", snapshots: [SnapshotRecord(name: "s", cowPath: "/s.cow", chunkSize: 4096)])]
        current.origins[0].snapshots[0].suspectReason = "modified"
        var commandCopy = Registry()
        commandCopy.origins = [OriginRecord(name: "o", path: "/o", snapshots: [SnapshotRecord(name: "s", cowPath: "/s.cow", chunkSize: 4096)])]
        commandCopy.origins[0].closedStamp = stamp
        let saved = commandCopy.keepingMarks(of: current)
        #expect(saved.origins[0].snapshots[0].suspectReason == "modified")
        #expect(saved.origins[0].closedStamp == nil)
        current.origins[0].closedStamp = stamp
        #expect(commandCopy.keepingMarks(of: current).origins[0].closedStamp == stamp)
    }

    /// The barrier's action runs once however many writes arrive together; all of them wait for
    /// it; a failure fails the writes that waited, and the next write runs it again.
    @Test func theWriteBarrierRunsItsActionOnceBeforeAnyWritePasses() async throws {
        let counts = BarrierCounts()
        let barrier = WriteBarrier {
            try await Task.sleep(for: .milliseconds(50))
            if counts.run() == 1 { throw ControllerError.refused("disk full") }
        }
        let firstRound = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<8 { group.addTask { (try? await barrier.pass()) != nil } }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(firstRound.allSatisfy { !$0 }, "every write waiting on a failed action fails")
        #expect(counts.runs == 1)
        let secondRound = await withTaskGroup(of: (Bool, Int).self) { group in
            for _ in 0..<8 { group.addTask { ((try? await barrier.pass()) != nil, counts.runs) } }
            return await group.reduce(into: [(Bool, Int)]()) { $0.append($1) }
        }
        #expect(secondRound.allSatisfy { $0.0 && $0.1 == 2 }, "all pass, each after the action's one successful run: \(secondRound)")
        try await barrier.pass()
        #expect(counts.runs == 2)
    }
}

/// How often a barrier's action ran.
final class BarrierCounts: Sendable {
    private let count = Mutex(0)
    /// Counts a run; returns its number (from 1).
    func run() -> Int { count.withLock { $0 += 1; return $0 } }
    var runs: Int { count.withLock { $0 } }
}
