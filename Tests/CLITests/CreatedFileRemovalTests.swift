import Foundation
import Testing
import TestSupport

/// snapvol deletes the COW and spare files it created when their volume goes, but only while the
/// path still holds that store: whatever a user put in its place is kept, and said so.
@Suite(.mayBlock) struct CreatedFileRemovalTests {
    static func pool() throws -> TestPool {
        let pool = try TestPool.withOrigin("vm", size: "4M", pattern: "0x11")
        try pool.ok("snapshot", "create", "other", "--origin", "vm", "--cow", pool.file("other.cow"), "--chunk-size", "64K")
        return pool
    }

    /// Each stand-in at a COW's path: a user's file, a directory with a file in it, another
    /// snapshot's COW (64K chunks against 16K). The COW itself was moved away first.
    @Test(arguments: ["file", "directory", "store"])
    func deletingASnapshotKeepsWhatNowStandsAtItsCowPath(standIn: String) throws {
        let pool = try Self.pool()
        let cow = pool.file("s.cow")
        try pool.ok("snapshot", "create", "s", "--origin", "vm", "--cow", cow, "--chunk-size", "16K")
        try pool.ok("io", "write", "vm", "0", "64K", "--pattern", "0x22")
        try FileManager.default.moveItem(atPath: cow, toPath: pool.file("s.moved"))
        let reason: String
        switch standIn {
        case "file":
            try Data("precious".utf8).write(to: URL(fileURLWithPath: cow))
            reason = "it no longer holds a COW store"
        case "directory":
            try FileManager.default.createDirectory(atPath: cow, withIntermediateDirectories: false)
            try Data("inside".utf8).write(to: URL(fileURLWithPath: cow + "/note"))
            reason = "it is no longer a regular file"
        default:
            try FileManager.default.copyItem(atPath: pool.file("other.cow"), toPath: cow)
            reason = "it holds a store of 64 KiB chunks, not 16 KiB"
        }
        let before = fingerprint([cow, pool.file("s.moved")])
        let deleted = try pool.ok("snapshot", "delete", "s")
        #expect(deleted.text == "deleted snapshot s\n")
        let warning = "kept \(cow), the COW snapvol created for 's': \(reason)"
        #expect(deleted.stderr == "snapvol: warning: \(warning)\n")
        #expect(fingerprint([cow, pool.file("s.moved")]) == before, "neither the stand-in nor the moved COW changed")
        #expect(try pool.ok("events").text.contains("s: \(warning)"))
        #expect(try pool.snapshotStatus("s") == nil)
    }

    /// The same through `prune`, and an untouched COW is still deleted beside a kept one.
    @Test func pruneKeepsAStandInAndDeletesTheRest() throws {
        let pool = try Self.pool()
        for name in ["a", "b"] {
            try pool.ok("snapshot", "create", name, "--origin", "vm", "--cow", pool.file("\(name).cow"))
        }
        try FileManager.default.removeItem(atPath: pool.file("a.cow"))
        try Data("mine".utf8).write(to: URL(fileURLWithPath: pool.file("a.cow")))
        let pruned = try pool.ok("snapshot", "prune", "--keep", "0", "--match", "[ab]")
        #expect(pruned.stderr == "snapvol: warning: kept \(pool.file("a.cow")), the COW snapvol created for 'a': it no longer holds a COW store\n")
        #expect(try String(contentsOfFile: pool.file("a.cow"), encoding: .utf8) == "mine")
        #expect(!FileManager.default.fileExists(atPath: pool.file("b.cow")))
    }

    /// A spare area replaced while `serve` holds its volume open (the volume cannot tell): the
    /// removal keeps the stand-in and says the spare area was kept.
    @Test func removingARemapVolumeKeepsAStandInAtItsSparePath() throws {
        let pool = try Self.pool()
        try Data(count: 1 << 20).write(to: URL(fileURLWithPath: pool.file("disk.img")))
        try pool.ok("remap", "create", "r", "--device", pool.file("disk.img"), "--spare", pool.file("spare.img"))
        let server = try ServeProcess(pool: pool)
        defer { server.stop() }
        try FileManager.default.moveItem(atPath: pool.file("spare.img"), toPath: pool.file("spare.moved"))
        try Data("mine".utf8).write(to: URL(fileURLWithPath: pool.file("spare.img")))
        let removed = try pool.ok("remap", "remove", "r")
        #expect(removed.text == "removed remap volume r; kept its spare area \(pool.file("spare.img")) (0 remapped chunks left in it)\n")
        #expect(try String(contentsOfFile: pool.file("spare.img"), encoding: .utf8) == "mine")
        #expect(try pool.ok("events").text.contains("r: kept \(pool.file("spare.img")), the spare area snapvol created: it no longer holds a COW store"))
    }
}
