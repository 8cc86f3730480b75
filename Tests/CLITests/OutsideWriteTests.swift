import Foundation
import Testing
import TestSupport
import BlockDevices
@testable import Controller

/// An origin file written while no snapvol process had it open (a VM started on the image while
/// `serve` was stopped) makes no copies, so its snapshots would silently show the new data. The
/// file's stamp, recorded when snapvol lets the origin go, gives it away: the snapshots are
/// marked suspect, loudly, and stay readable. snapvol's own writes, merges and crashes never
/// mark anything.
@Suite(.mayBlock) struct OutsideWriteTests {
    /// Writes `bytes` into the file at `path` at `offset`, as a program other than snapvol would.
    static func writeOutside(_ path: String, at offset: UInt64, _ bytes: [UInt8]) throws {
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.seek(toOffset: offset)
        try handle.write(contentsOf: bytes)
        try handle.close()
    }

    static func suspect(_ pool: TestPool, _ name: String) throws -> String? {
        try pool.snapshotStatus(name)?["suspect"] as? String
    }

    static func alarms(_ pool: TestPool) throws -> [String] {
        try pool.ok("events").text.split(separator: "\n").map(String.init).filter { $0.contains("MODIFIED OUTSIDE SNAPVOL") }
    }

    @Test func aWriteOutsideSnapvolMarksItsOriginsSnapshotsSuspect() throws {
        let pool = try TestPool.withOrigin("vm", size: "4M", pattern: "0x11")
        for name in ["s", "t"] { try pool.ok("snapshot", "create", name, "--origin", "vm", "--cow", pool.file("\(name).cow"), "--cow-size", "4M") }
        try pool.ok("io", "write", "vm", "0", "64K", "--pattern", "0x22")
        #expect(try Self.suspect(pool, "s") == nil, "snapvol's own write")

        try Self.writeOutside(pool.file("vm.img"), at: 1 << 20, [UInt8](repeating: 0x33, count: 4096))
        let reason = try #require(try Self.suspect(pool, "s"))
        #expect(reason.hasPrefix("its origin \(pool.file("vm.img")) was modified outside snapvol (changed at "), "\(reason)")
        #expect(reason.hasSuffix(", while no snapvol process had it open): it may show data written since it was taken"))
        #expect(try Self.suspect(pool, "t") == reason)
        #expect(try pool.snapshotStatus("s")?["state"] as? String == "active", "still readable")
        #expect(try pool.ok("io", "read", "s", "0", "64K").stdout.allSatisfy { $0 == 0x11 })
        #expect(try pool.ok("status").text.contains("active (SUSPECT: its origin \(pool.file("vm.img")) was modified outside snapvol"))
        let check = try pool.run("pool", "check")
        #expect(check.status == 2)
        #expect(check.text.hasPrefix("SNAPVOL CRITICAL - snapshot s is suspect: its origin"), "\(check.text)")
        #expect(try Self.alarms(pool).count == 1, "reported once, however often the pool is opened")
        #expect(try Self.alarms(pool).first?.contains("snapshots s, t may show data written since taken") == true)

        let refused = try pool.run("snapshot", "trust", "s", "nope")
        #expect(refused.status == 1 && refused.stderr == "snapvol: error: no snapshot named 'nope' in this pool\n", "\(refused.stderr)")
        #expect(try Self.suspect(pool, "s") != nil, "all names are checked first")
        #expect(try pool.ok("snapshot", "trust", "s").text == "trusted snapshot s: no longer suspect\n")
        #expect(try Self.suspect(pool, "s") == nil)
        #expect(try Self.suspect(pool, "t") != nil)
        try pool.ok("snapshot", "delete", "t")
        #expect(try pool.run("pool", "check").status == 0)
        #expect(try pool.ok("snapshot", "trust", "s").text == "snapshot s was not suspect\n")
    }

    /// A block device has no modification time; its write counters (sysfs) give a write away.
    /// snapvol's own writes (buffered: flushed before the counters are read) and reads by
    /// anyone are not taken for one. A device set up again (a new `diskseq`) counts afresh:
    /// nothing can be told, and an event says so.
    @Test(.enabled(if: Environment.canRun(needsRoot: true, commands: ["losetup", "dd"])))
    func aBlockDeviceWrittenOutsideSnapvolIsCaughtToo() throws {
        let (pool, loop) = try TestPool.withLoopOrigin(size: 8 << 20)
        defer { loop.detach() }
        try pool.ok("io", "write", "disk", "0", "1M", "--pattern", "0x11")
        try pool.ok("snapshot", "create", "s", "--origin", "disk", "--cow", pool.file("s.cow"), "--cow-size", "4M")
        try pool.ok("io", "write", "disk", "0", "64K", "--pattern", "0x22")
        #expect(try Self.suspect(pool, "s") == nil, "snapvol's own writes")
        try Shell.check(["dd", "if=\(loop.path)", "of=/dev/null", "bs=1M", "count=1", "iflag=direct"])
        #expect(try Self.suspect(pool, "s") == nil, "a read")

        try Shell.check(["dd", "if=/dev/zero", "of=\(loop.path)", "bs=4k", "count=1", "seek=100", "oflag=direct", "conv=notrunc"])
        #expect(try pool.run("pool", "check").status == 2, "seen before any holder")
        #expect(try Self.alarms(pool) == [], "by a check that writes nothing")
        #expect(try Self.suspect(pool, "s") == "its origin \(loop.path) was modified outside snapvol (4 KiB written or discarded, "
                + "while no snapvol process had it open): it may show data written since it was taken")
        #expect(try Self.alarms(pool).first?.hasSuffix("ALARM disk: MODIFIED OUTSIDE SNAPVOL (\(loop.path): 4 KiB written or discarded, "
                                                     + "while no snapvol process had it open): snapshot s may show data written since taken") == true)
        #expect(try pool.ok("io", "read", "s", "64K", "4K").stdout.allSatisfy { $0 == 0x11 }, "still readable")

        try pool.ok("snapshot", "trust", "s")
        try loop.setUpAgain()
        #expect(try Self.suspect(pool, "s") == nil)
        let events = try pool.ok("events").text
        #expect(events.contains("disk: cannot tell whether \(loop.path) was written while no snapvol process had it open: "
                                + "the device has been set up again since"), "\(events)")
        try Shell.check(["dd", "if=/dev/zero", "of=\(loop.path)", "bs=4k", "count=1", "seek=100", "oflag=direct", "conv=notrunc"])
        #expect(try Self.suspect(pool, "s") != nil, "counted afresh from the new instance")
    }

    /// A COW restored from an older copy (fewer exceptions than when snapvol last let it go)
    /// would show the origin's newer data for chunks copied since: its snapshot is suspect, to
    /// monitors at once and for good at the next open, with one alarm. A killed writer never
    /// lowers the count (its commits are durable), and a merge, which consumes exceptions, is
    /// not judged.
    @Test func aCowRestoredFromAnOlderCopyMakesItsSnapshotSuspect() throws {
        let pool = try TestPool.withOrigin("vm", size: "4M", pattern: "0x11")
        try pool.ok("snapshot", "create", "s", "--origin", "vm", "--cow", pool.file("s.cow"), "--cow-size", "4M")
        try pool.ok("io", "write", "vm", "0", "64K", "--pattern", "0x22")
        try FileManager.default.copyItem(atPath: pool.file("s.cow"), toPath: pool.file("older.cow"))
        try pool.ok("io", "write", "vm", "1M", "64K", "--pattern", "0x33")
        #expect(try Self.suspect(pool, "s") == nil, "its own copies")
        try FileManager.default.removeItem(atPath: pool.file("s.cow"))
        try FileManager.default.copyItem(atPath: pool.file("older.cow"), toPath: pool.file("s.cow"))

        let reason = "its COW \(pool.file("s.cow")) holds 4 exceptions, 8 when snapvol last let it go "
            + "(restored from an older copy, or changed outside snapvol): chunks copied since may show newer data"
        let check = try pool.run("pool", "check")
        #expect(check.status == 2 && check.text.hasPrefix("SNAPVOL CRITICAL - snapshot s is suspect: \(reason)"), "\(check.text)")
        #expect(try Self.suspect(pool, "s") == reason)
        let alarms = try pool.ok("events").text.split(separator: "\n").filter { $0.contains("COW WENT BACK IN TIME") }
        #expect(alarms.count == 1)
        try pool.ok("snapshot", "trust", "s")
        #expect(try Self.suspect(pool, "s") == nil, "trusted, and the count recorded anew")
    }

    /// `pool check` and the read-only monitors, which read the pool without its lock, see the
    /// write outside at once, with no holder yet to mark it (nothing is written for it); the next
    /// holder marks it for good.
    @Test func monitoringSeesAWriteOutsideBeforeAnyHolderDoes() throws {
        let pool = try TestPool.withOrigin("vm", size: "4M", pattern: "0x11")
        try pool.ok("snapshot", "create", "s", "--origin", "vm", "--cow", pool.file("s.cow"), "--cow-size", "4M")
        #expect(try pool.run("pool", "check").status == 0)
        try Self.writeOutside(pool.file("vm.img"), at: 0, [0x44])
        let registry = try Data(contentsOf: URL(fileURLWithPath: pool.file("pool/registry.json")))
        let check = try pool.run("pool", "check")
        #expect(check.status == 2 && check.text.hasPrefix("SNAPVOL CRITICAL - snapshot s is suspect: its origin"), "\(check.text)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: pool.file("pool/registry.json"))) == registry, "a check writes nothing")
        #expect(try Self.alarms(pool).isEmpty)
        #expect(try Self.suspect(pool, "s") != nil)
        #expect(try Self.alarms(pool).count == 1, "the holder marked it")
    }

    /// A stamp that changed between the observer's two reads of the registry is a holder's own
    /// doing (cleared before a write, recorded at the end): no judgment. One both reads agree on
    /// and the file does not match is a write outside.
    @Test func anObserverJudgesOnlyAStampBothOfItsReadsAgreeOn() {
        let closed = WriteStamp.file(.init(modifiedSeconds: 1, modifiedNanoseconds: 0, size: 4096))
        let later = WriteStamp.file(.init(modifiedSeconds: 2, modifiedNanoseconds: 0, size: 4096))
        func registry(_ stamp: WriteStamp?) -> Registry {
            var registry = Registry()
            registry.origins = [OriginRecord(name: "o", path: "/o")]
            registry.origins[0].closedStamp = stamp
            return registry
        }
        #expect(PoolObserver.outsideWrites(registry(closed), ["/o": later], registryAfter: registry(closed))["/o"] != nil)
        #expect(PoolObserver.outsideWrites(registry(closed), ["/o": closed], registryAfter: registry(closed)).isEmpty)
        #expect(PoolObserver.outsideWrites(registry(closed), ["/o": later], registryAfter: registry(nil)).isEmpty, "cleared for a write")
        #expect(PoolObserver.outsideWrites(registry(nil), ["/o": closed], registryAfter: registry(later)).isEmpty, "recorded at a close")
        #expect(PoolObserver.outsideWrites(registry(nil), ["/o": later], registryAfter: registry(nil)).isEmpty)
    }

    /// Writes through `serve` (a real NBD client), and a merge that rewrites the origin, are
    /// snapvol's own: nothing is marked.
    @Test(.enabled(if: Environment.canRun(commands: ["qemu-io"])))
    func snapvolsOwnWritesAndMergesAreNotMistakenForOutsideOnes() throws {
        let pool = try TestPool.withOrigin("vm", size: "4M", pattern: "0x11")
        for name in ["s", "t"] { try pool.ok("snapshot", "create", name, "--origin", "vm", "--cow", pool.file("\(name).cow"), "--cow-size", "4M") }
        let server = try ServeProcess(pool: pool)
        try Shell.check(["qemu-io", "-f", "raw", server.uri("vm"), "-c", "write -P 0x22 0 1M"])
        #expect(server.stop() == 0)
        try pool.ok("snapshot", "merge", "s")
        #expect(try Self.suspect(pool, "t") == nil)
        #expect(try Self.alarms(pool).isEmpty)
        #expect(try pool.ok("io", "read", "vm", "0", "4K").stdout.allSatisfy { $0 == 0x11 }, "merged back")
    }

    /// A process killed after writing the origin never recorded its stamp: the stamp was cleared
    /// before its first write, so the next owner has nothing to judge by and marks nothing (no
    /// false alarm after a crash), then records the stamp again when it lets go.
    @Test(.enabled(if: Environment.canRun(commands: ["qemu-io"])))
    func aKilledWriterLeavesNoStampToJudgeBy() throws {
        let pool = try TestPool.withOrigin("vm", size: "4M", pattern: "0x11")
        try pool.ok("snapshot", "create", "s", "--origin", "vm", "--cow", pool.file("s.cow"), "--cow-size", "4M")
        let server = try ServeProcess(pool: pool)
        try Shell.check(["qemu-io", "-f", "raw", server.uri("vm"), "-c", "write -P 0x22 0 1M"])
        kill(server.processIdentifier, SIGKILL)
        _ = server.stop()
        #expect(try Self.suspect(pool, "s") == nil)
        #expect(try pool.ok("io", "read", "s", "0", "1M").stdout.allSatisfy { $0 == 0x11 })
        // That command let the origin go cleanly: a write outside from now on is seen.
        try Self.writeOutside(pool.file("vm.img"), at: 0, [0x44])
        #expect(try Self.suspect(pool, "s") != nil)
    }
}
