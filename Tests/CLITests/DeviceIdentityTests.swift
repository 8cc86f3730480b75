import Foundation
import Testing
import TestSupport

/// A block device name that comes to name another device (`/dev/sdb` after a restart; here a
/// loop node set up again over another file) is not taken for the origin or COW recorded under
/// it: snapvol neither reads nor writes the device it finds, says what it found, and an origin
/// written meanwhile gives the snapshot up as for a COW that cannot be opened.
@Suite(.mayBlock, .serialized, .enabled(if: Environment.canRun(needsRoot: true, commands: ["losetup"])))
struct DeviceIdentityTests {
    static func bytes(_ path: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

    /// The COW's node now holds a copy of the COW (a valid store of the same chunk size, as
    /// another pool's snapshot could be): without the identity, snapvol would attach it and
    /// write copies into it.
    @Test func aCowNodeNamingAnotherDeviceIsNeitherReadNorWritten() throws {
        let pool = try TestPool.withOrigin("vm", size: "8M", pattern: "0x11")
        let cow = try LoopDevice(backingFile: pool.file("cow.backing"), size: 8 << 20)
        defer { cow.detach() }
        try pool.ok("snapshot", "create", "s", "--origin", "vm", "--cow", cow.path, "--chunk-size", "16K")
        try pool.ok("io", "write", "vm", "0", "64K", "--pattern", "0x22")
        #expect(try pool.snapshotStatus("s")?["exceptions"] as? Int == 4)
        #expect(try pool.snapshotStatus("s")?["cow_identity"] as? String == "loop over \(pool.file("cow.backing"))", "shown by status --json")

        try FileManager.default.copyItem(atPath: pool.file("cow.backing"), toPath: pool.file("other.backing"))
        try cow.setUpAgain(over: pool.file("other.backing"))
        let expected = "\(cow.path) now names another device (loop over \(pool.file("other.backing"))) than the one the COW of snapshot 's' "
            + "was on (loop over \(pool.file("cow.backing"))): block device names can change when the host restarts or a device is set up again; "
            + "put that device back under this name, or use a name that stays (/dev/disk/by-id/..., /dev/VG/LV)"
        let check = try pool.run("pool", "check")
        #expect(check.status == 2 && check.text.contains("snapshot s is inactive: \(expected)"), "\(check.text)")
        let status = try #require(try pool.snapshotStatus("s"))
        #expect(status["state"] as? String == "inactive")
        #expect(status["reason"] as? String == expected + "; the origin's next write gives it up")

        let before = try Self.bytes(pool.file("other.backing"))
        try pool.ok("io", "write", "vm", "1M", "64K", "--pattern", "0x33")
        #expect(try pool.snapshotStatus("s")?["state"] as? String == "invalid", "given up at the origin's write")
        #expect(try Self.bytes(pool.file("other.backing")) == before, "the other device is left as it was, not invalidated")
    }

    /// The origin's node now holds another file: the origin is inactive, naming both devices,
    /// and a write to it is refused without reaching the device.
    @Test func anOriginNodeNamingAnotherDeviceIsNotWritten() throws {
        let (pool, loop) = try TestPool.withLoopOrigin(size: 4 << 20)
        defer { loop.detach() }
        try pool.ok("snapshot", "create", "s", "--origin", "disk", "--cow", pool.file("s.cow"), "--cow-size", "4M")
        _ = FileManager.default.createFile(atPath: pool.file("stranger.img"), contents: Data(repeating: 0x5A, count: 4 << 20))
        try loop.setUpAgain(over: pool.file("stranger.img"))
        let refused = try pool.run("io", "write", "disk", "0", "4K", "--pattern", "0x11")
        #expect(refused.status == 1)
        #expect(refused.stderr.hasPrefix("snapvol: error: volume 'disk' is not active: \(loop.path) now names another device (loop over \(pool.file("stranger.img"))) than the one origin 'disk' was on (loop over \(pool.file("disk.backing")))"),
                "\(refused.stderr)")
        #expect(try Self.bytes(pool.file("stranger.img")) == Data(repeating: 0x5A, count: 4 << 20))
        try loop.setUpAgain()
        try pool.ok("io", "write", "disk", "0", "4K", "--pattern", "0x11")
        #expect(try pool.snapshotStatus("s")?["state"] as? String == "active", "its own device back under the name")
    }

    /// The same for a remap volume's spare area: its node now holds a copy (a valid store), which
    /// would otherwise take the volume's remapped chunks' writes.
    @Test func aSpareNodeNamingAnotherDeviceIsNotWritten() throws {
        let pool = try TestPool()
        try pool.ok("pool", "init")
        try Data(repeating: 0x11, count: 1 << 20).write(to: URL(fileURLWithPath: pool.file("disk.img")))
        let spare = try LoopDevice(backingFile: pool.file("spare.backing"), size: 1 << 20)
        defer { spare.detach() }
        try pool.ok("remap", "create", "disk", "--device", pool.file("disk.img"), "--spare", spare.path)
        try pool.ok("remap", "add", "disk", "2")
        try FileManager.default.copyItem(atPath: pool.file("spare.backing"), toPath: pool.file("copy.backing"))
        try spare.setUpAgain(over: pool.file("copy.backing"))
        let refused = try pool.run("io", "write", "disk", "8K", "4K", "--pattern", "0x22")
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("\(spare.path) now names another device (loop over \(pool.file("copy.backing"))) than the one the spare area of remap volume 'disk' was on"),
                "\(refused.stderr)")
        let check = try pool.run("pool", "check")
        #expect(check.status == 2 && check.text.contains("now names another device"), "\(check.text)")
        #expect(try Self.bytes(pool.file("copy.backing")) == Self.bytes(pool.file("spare.backing")), "the copy is left as it was")

        let wrong = try pool.run("remap", "relocate", "disk", "--spare", spare.path)
        #expect(wrong.status == 1 && wrong.stderr.contains("\(spare.path) is another device (loop over \(pool.file("copy.backing")))"), "\(wrong.stderr)")
        let moved = try LoopDevice(backingFile: pool.file("spare.backing"), size: 1 << 20)
        defer { moved.detach() }
        #expect(try pool.ok("remap", "relocate", "disk", "--spare", moved.path).text == "relocated remap volume disk: active\n")
        try pool.ok("io", "write", "disk", "8K", "4K", "--pattern", "0x22")
        #expect(try pool.ok("io", "read", "disk", "8K", "4").stdout.allSatisfy { $0 == 0x22 })
        #expect(try Self.bytes(pool.file("disk.img"))[8192] == 0x11, "the remapped chunk lives in the spare area")
    }

    /// A pool from before identities (none in its registry) learns them when it next opens the
    /// devices, and guards them from then on.
    @Test func identitiesAreLearnedByAPoolThatHadNone() throws {
        let (pool, loop) = try TestPool.withLoopOrigin(size: 4 << 20)
        defer { loop.detach() }
        let path = pool.file("pool/registry.json")
        let stripped = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").filter { !$0.contains("device_identity") }
        try stripped.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
        #expect(try !String(contentsOfFile: path, encoding: .utf8).contains("device_identity"))
        try pool.ok("status")
        #expect(try String(contentsOfFile: path, encoding: .utf8).contains("\"device_identity\" : \"loop over"))
        let origin = try #require((try pool.status()["origins"] as? [[String: Any]])?.first)
        #expect(origin["device_identity"] as? String == "loop over \(pool.file("disk.backing"))")
    }
}
