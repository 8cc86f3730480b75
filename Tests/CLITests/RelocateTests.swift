import Foundation
import Testing
import TestSupport

/// `origin relocate` and `snapshot relocate`: a volume whose device is found under another path
/// (a file moved, a block device renamed by a restart) is pointed at it, once the device there
/// is shown to be its own, and comes back with its data; anything else is refused in one line
/// with the registry unchanged.
@Suite(.mayBlock) struct RelocateTests {
    /// Origin `vm` (8 MiB of 0x11) with snapshot `s` on a loop device over `cow.backing`, 16K
    /// chunks, holding the first 64 KiB (4 exceptions).
    static func poolWithALoopCow() throws -> (TestPool, LoopDevice) {
        let pool = try TestPool.withOrigin("vm", size: "8M", pattern: "0x11")
        let cow = try LoopDevice(backingFile: pool.file("cow.backing"), size: 8 << 20)
        do {
            try pool.ok("snapshot", "create", "s", "--origin", "vm", "--cow", cow.path, "--chunk-size", "16K")
            try pool.ok("io", "write", "vm", "0", "64K", "--pattern", "0x22")
        } catch {
            cow.detach()
            throw error
        }
        return (pool, cow)
    }

    static func registry(_ pool: TestPool) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: pool.file("pool/registry.json"))) }

    /// Files moved while no snapvol process had them (`mv` keeps the modification time, so the
    /// snapshot is not suspect).
    @Test func movedFilesAreFoundAgain() throws {
        let pool = try TestPool.withOrigin("vm", size: "4M", pattern: "0x11")
        try pool.ok("snapshot", "create", "s", "--origin", "vm", "--cow", pool.file("s.cow"), "--cow-size", "4M")
        try pool.ok("io", "write", "vm", "0", "64K", "--pattern", "0x22")
        try FileManager.default.createDirectory(atPath: pool.file("moved"), withIntermediateDirectories: false)
        for name in ["vm.img", "s.cow"] { try FileManager.default.moveItem(atPath: pool.file(name), toPath: pool.file("moved/\(name)")) }
        #expect(try pool.snapshotStatus("s")?["state"] as? String == "inactive")

        let registry = try Self.registry(pool)
        for (arguments, message) in [
            (["origin", "relocate", "s", pool.file("moved/vm.img")], "snapvol: error: 's' is a snapshot: use 'snapshot relocate'\n"),
            (["origin", "relocate", "vm", pool.file("nope")], "snapvol: error: \(pool.file("nope")) does not exist\n"),
            (["origin", "relocate", "vm", pool.file("moved/s.cow")],
             "snapvol: error: \(pool.file("moved/s.cow")) holds an exception store (a snapshot's COW or a spare area), not the data of origin 'vm': give the origin's own path (--adopt-device takes it anyway)\n"),
            (["snapshot", "relocate", "s", pool.file("moved/vm.img")],
             "snapvol: error: \(pool.file("moved/vm.img")): not a snapshot COW device (magic 0x22222222, expected 0x70416e53)\n"),
        ] {
            let refused = try pool.run(arguments: arguments)
            #expect(refused.status == 1 && refused.stderr == message, "\(arguments): \(refused.stderr)")
        }
        #expect(try Self.registry(pool) == registry, "refusals change nothing")

        // A relative path is taken from the command's working directory.
        let relative = try Shell.check(["sh", "-c", "cd \"$0\" && exec \"$1\" snapshot relocate s moved/s.cow --pool \"$2\"",
                                        pool.file(""), SnapvolBinary.path, pool.path])
        #expect(relative.text == "relocated snapshot s to \(pool.file("moved/s.cow")): inactive (its origin 'vm' is)\n", "\(relative.text)")
        #expect(try pool.ok("origin", "relocate", "vm", pool.file("moved/vm.img")).text == "relocated origin vm to \(pool.file("moved/vm.img")): active\n")
        let status = try #require(try pool.snapshotStatus("s"))
        #expect(status["state"] as? String == "active" && status["suspect"] == nil, "\(status)")
        #expect(try pool.ok("io", "read", "s", "0", "64K").stdout.allSatisfy { $0 == 0x11 })
        #expect(try pool.ok("io", "read", "vm", "0", "64K").stdout.allSatisfy { $0 == 0x22 })
        let active = try pool.run("origin", "relocate", "vm", pool.file("moved/s.cow"))
        #expect(active.status == 1 && active.stderr == "snapvol: error: 'vm' is active on \(pool.file("moved/vm.img")): only a volume whose device could not be opened is relocated\n",
                "\(active.stderr)")
        #expect(try pool.ok("events").text.contains("vm: relocated from \(pool.file("vm.img")) to \(pool.file("moved/vm.img"))"))
    }

    /// Forwarded to a running `serve`: the snapshot joins the origin its clients write, and
    /// their first write (which gives up snapshots still away) keeps it.
    @Test(.enabled(if: Environment.canRun(commands: ["qemu-io"])))
    func aSnapshotRelocatedUnderServeJoinsAndIsKept() throws {
        let pool = try TestPool.withOrigin("vm", size: "4M", pattern: "0x11")
        try pool.ok("snapshot", "create", "s", "--origin", "vm", "--cow", pool.file("s.cow"), "--cow-size", "4M")
        try FileManager.default.moveItem(atPath: pool.file("s.cow"), toPath: pool.file("moved.cow"))
        let server = try ServeProcess(pool: pool)
        #expect(try pool.snapshotStatus("s")?["state"] as? String == "inactive")
        #expect(try pool.ok("snapshot", "relocate", "s", pool.file("moved.cow")).text == "relocated snapshot s to \(pool.file("moved.cow")): active\n")
        try Shell.check(["qemu-io", "-f", "raw", server.uri("vm"), "-c", "write -P 0x22 0 64k"])
        #expect(try pool.snapshotStatus("s")?["state"] as? String == "active")
        #expect(try pool.ok("io", "read", "s", "0", "64K").stdout.allSatisfy { $0 == 0x11 })
        #expect(server.stop() == 0)
        #expect(try pool.snapshotStatus("s")?["exceptions"] as? Int == 4)
    }

    /// A remap volume whose spare file was moved: relocated, its remapped chunk reads from the
    /// spare area again; a file that is no spare area is refused.
    @Test func aRemapVolumesMovedSpareIsFoundAgain() throws {
        let pool = try TestPool()
        try pool.ok("pool", "init")
        try Data(repeating: 0x11, count: 1 << 20).write(to: URL(fileURLWithPath: pool.file("disk.img")))
        try pool.ok("remap", "create", "disk", "--device", pool.file("disk.img"), "--spare", pool.file("spare.img"), "--spare-size", "256K")
        try pool.ok("remap", "add", "disk", "2")
        try pool.ok("io", "write", "disk", "8K", "4K", "--pattern", "0x22")
        try FileManager.default.moveItem(atPath: pool.file("spare.img"), toPath: pool.file("moved.img"))
        let registry = try Self.registry(pool)
        let refused = try pool.run("remap", "relocate", "disk", "--spare", pool.file("disk.img"))
        #expect(refused.status == 1 && refused.stderr == "snapvol: error: \(pool.file("disk.img")) is already used by 'disk'\n", "\(refused.stderr)")
        let none = try pool.run("remap", "relocate", "disk")
        #expect(none.status == 1 && none.stderr == "snapvol: error: give --device, --spare or both: the new paths\n", "\(none.stderr)")
        #expect(try Self.registry(pool) == registry)
        #expect(try pool.ok("remap", "relocate", "disk", "--spare", pool.file("moved.img")).text == "relocated remap volume disk: active\n")
        #expect(try pool.ok("io", "read", "disk", "8K", "4").stdout.allSatisfy { $0 == 0x22 })
    }

    /// `--adopt-device`: the operator takes a device of another identity as the volume's own
    /// (here the same COW file attached through a hard link to it, which the kernel names by
    /// the link); its identity is recorded anew, and an event says so.
    @Test(.enabled(if: Environment.canRun(needsRoot: true, commands: ["losetup"])))
    func anAdoptedDeviceIsTakenAsTheVolumesOwn() throws {
        let (pool, cow) = try Self.poolWithALoopCow()
        defer { cow.detach() }
        try FileManager.default.linkItem(atPath: pool.file("cow.backing"), toPath: pool.file("link.backing"))
        try cow.setUpAgain(over: pool.file("link.backing"))
        #expect(try pool.snapshotStatus("s")?["state"] as? String == "inactive", "another identity: the same file under another path")
        #expect(try pool.ok("snapshot", "relocate", "s", cow.path, "--adopt-device").text == "relocated snapshot s to \(cow.path): active\n")
        #expect(try pool.snapshotStatus("s")?["cow_identity"] as? String == "loop over \(pool.file("link.backing"))")
        #expect(try pool.ok("io", "read", "s", "0", "64K").stdout.allSatisfy { $0 == 0x11 })
        #expect(try pool.ok("events").text.contains("s: relocated from \(cow.path) to \(cow.path), its device adopted by the operator (loop over \(pool.file("link.backing")))"))
    }

    /// A COW file copied elsewhere without keeping its time is fine (a COW has no stamp); an
    /// origin file copied so is found changed: its snapshot is suspect, as after any write
    /// outside snapvol.
    @Test func anOriginCopiedWithoutItsTimeMakesItsSnapshotsSuspect() throws {
        let pool = try TestPool.withOrigin("vm", size: "4M", pattern: "0x11")
        try pool.ok("snapshot", "create", "s", "--origin", "vm", "--cow", pool.file("s.cow"), "--cow-size", "4M")
        try pool.ok("io", "write", "vm", "0", "64K", "--pattern", "0x22")
        Thread.sleep(forTimeInterval: 0.01)
        try FileManager.default.copyItem(atPath: pool.file("vm.img"), toPath: pool.file("copy.img"))
        try Shell.check(["touch", pool.file("copy.img")])
        try FileManager.default.removeItem(atPath: pool.file("vm.img"))
        try pool.ok("origin", "relocate", "vm", pool.file("copy.img"))
        #expect(try pool.snapshotStatus("s")?["suspect"] as? String != nil)
    }

    /// A block device renamed (here: its loop node set up again over another file, and the COW's
    /// file attached to another node): relocating to the stranger is refused, naming both
    /// devices; to the COW's own device it brings the snapshot back with its exceptions.
    @Test(.enabled(if: Environment.canRun(needsRoot: true, commands: ["losetup"])))
    func aRenamedBlockDeviceIsFoundByWhatItIs() throws {
        let (pool, cow) = try Self.poolWithALoopCow()
        defer { cow.detach() }
        try FileManager.default.copyItem(atPath: pool.file("cow.backing"), toPath: pool.file("stranger.backing"))
        try cow.setUpAgain(over: pool.file("stranger.backing"))
        let moved = try LoopDevice(backingFile: pool.file("cow.backing"), size: 8 << 20)
        defer { moved.detach() }
        #expect(try pool.snapshotStatus("s")?["state"] as? String == "inactive")

        let registry = try Self.registry(pool)
        let wrong = try pool.run("snapshot", "relocate", "s", cow.path)
        #expect(wrong.status == 1)
        #expect(wrong.stderr == "snapvol: error: \(cow.path) is another device (loop over \(pool.file("stranger.backing"))) than the one the COW of snapshot 's' was on (loop over \(pool.file("cow.backing")))\n",
                "its own path, found holding another device: \(wrong.stderr)")
        let stranger = try LoopDevice(backingFile: pool.file("stranger2.backing"), size: 8 << 20)
        defer { stranger.detach() }
        let refused = try pool.run("snapshot", "relocate", "s", stranger.path)
        #expect(refused.status == 1)
        #expect(refused.stderr == "snapvol: error: \(stranger.path) is another device (loop over \(pool.file("stranger2.backing"))) than the one the COW of snapshot 's' was on (loop over \(pool.file("cow.backing")))\n",
                "\(refused.stderr)")
        #expect(try Self.registry(pool) == registry)

        #expect(try pool.ok("snapshot", "relocate", "s", moved.path).text == "relocated snapshot s to \(moved.path): active\n")
        #expect(try pool.snapshotStatus("s")?["exceptions"] as? Int == 4)
        #expect(try pool.ok("io", "read", "s", "0", "64K").stdout.allSatisfy { $0 == 0x11 })
    }
}
