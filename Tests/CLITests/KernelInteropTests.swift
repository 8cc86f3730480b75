import Foundation
import Testing
import TestSupport

/// COW devices the real kernel wrote, adopted with `snapshot attach`: the snapshot dumps to the
/// kernel's own snapshot image and `status --dm` prints the kernel's own status line.
@Suite(.mayBlock) struct KernelInteropTests {
    @Test(arguments: KernelFixture.names)
    func kernelCowIsAdoptedAndReadsBackExactly(_ name: String) throws {
        let fixture = try KernelFixture.load(name)
        let pool = try TestPool()
        try fixture.extract("origin", to: pool.file("origin.img"))
        try fixture.extract("cow", to: pool.file("cow.img"))
        try pool.ok("pool", "init")
        try pool.ok("origin", "add", "origin", "--path", pool.file("origin.img"))
        let attach = try pool.ok("snapshot", "attach", "snap", "--origin", "origin", "--cow", pool.file("cow.img"))
        #expect(try pool.ok("status", "snap", "--dm").text.trimmingCharacters(in: .whitespacesAndNewlines) == fixture.kernelStatus)
        if fixture.isInvalid {
            #expect(attach.stderr.contains("invalidated"))
            #expect(try pool.snapshotStatus("snap")?["state"] as? String == "invalid")
            let read = try pool.run("io", "read", "snap", "0", "4096")
            #expect(read.status != 0)
            #expect(read.stderr.contains("snap: snapshot is invalid"))
            #expect(read.stderr.split(separator: "\n").count == 1)
            return
        }
        let dump = pool.file("snap.img")
        try pool.ok("io", "dump", "snap", "--output", dump)
        #expect(sameBytes([UInt8](FileManager.default.contents(atPath: dump)!), try fixture.image("snapshot")))
        let check = try SnapvolBinary.run(["check", pool.file("cow.img"), "--json"])
        #expect(check.status == 0)
    }
}

/// Origin and COW on real block devices (loop devices). Needs root and losetup (always in CI).
@Suite(.mayBlock, .serialized, .enabled(if: Environment.canRun(needsRoot: true, commands: ["losetup"])))
struct BlockDeviceCLITests {
    @Test func originAndCowOnLoopDevices() throws {
        let pool = try TestPool()
        let origin = try LoopDevice(backingFile: pool.file("origin.backing"), size: 16 << 20)
        defer { origin.detach() }
        let cow = try LoopDevice(backingFile: pool.file("cow.backing"), size: 8 << 20)
        defer { cow.detach() }
        try pool.ok("pool", "init")
        try pool.ok("origin", "add", "disk", "--path", origin.path)
        try pool.ok("io", "write", "disk", "0", "16M", "--pattern", "0x5a")
        try pool.ok("snapshot", "create", "snap", "--origin", "disk", "--cow", cow.path, "--chunk-size", "64K")
        try pool.ok("io", "write", "disk", "1M", "3M", "--pattern", "0xa5")
        let status = try #require(try pool.snapshotStatus("snap"))
        #expect(status["exceptions"] as? Int == 48)
        #expect(status["cow_total_bytes"] as? Int == 8 << 20)
        let dump = pool.file("snap.img")
        try pool.ok("io", "dump", "snap", "--output", dump)
        #expect(sameBytes([UInt8](FileManager.default.contents(atPath: dump)!), [UInt8](repeating: 0x5a, count: 16 << 20)))
        // The snapshot joins the origin again, from the block device alone, in a new process.
        let read = try pool.ok("io", "read", "disk", "1M", "4")
        #expect([UInt8](read.stdout) == [0xa5, 0xa5, 0xa5, 0xa5])
        try pool.ok("snapshot", "merge", "snap", "--no-progress")
        #expect([UInt8](try pool.ok("io", "read", "disk", "1M", "4").stdout) == [0x5a, 0x5a, 0x5a, 0x5a])
    }

    /// `losetup -d` on the COW's loop device while a server writes through the origin: Linux
    /// defers the detach of an open loop device, so the writes keep working; when the server
    /// exits the device goes, and the next owner reports the snapshot inactive, naming the
    /// device, and lets it be deleted. Nothing hangs, the origin keeps every write.
    @Test func cowLoopDeviceDetachedUnderLoad() throws {
        let pool = try TestPool()
        let cow = try LoopDevice(backingFile: pool.file("cow.backing"), size: 8 << 20)
        defer { cow.detach() }
        try pool.ok("pool", "init")
        try pool.ok("origin", "add", "disk", "--path", pool.file("disk.img"), "--size", "8M")
        try pool.ok("snapshot", "create", "snap", "--origin", "disk", "--cow", cow.path, "--chunk-size", "16K")
        let server = try ServeProcess(pool: pool)
        for step in 0..<12 {
            if step == 6 { cow.detach() }   // under load: the server holds the device open
            try pool.ok("io", "write", "disk", "\(step * 512)K", "512K", "--pattern", "\(step + 1)")
        }
        let live = try #require(try pool.snapshotStatus("snap"))
        #expect(live["state"] as? String == "active")
        #expect(live["exceptions"] as? Int == 12 * 32)
        _ = server.stop()
        let after = try #require(try pool.snapshotStatus("snap"))
        #expect(after["state"] as? String == "inactive", "\(after)")
        #expect((after["reason"] as? String ?? "").contains(cow.path), "\(after)")
        for step in 0..<12 {
            let bytes = [UInt8](try pool.ok("io", "read", "disk", "\(step * 512)K", "4").stdout)
            #expect(bytes == [UInt8](repeating: UInt8(step + 1), count: 4))
        }
        try pool.ok("snapshot", "delete", "snap")
        #expect(try pool.snapshotStatus("snap") == nil)
    }
}
