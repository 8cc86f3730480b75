import Foundation
import Testing
import TestSupport

/// qemu's image locks on origins: while snapvol has an origin open, qemu refuses to write the
/// image behind its snapshots' back; while a qemu program writes an image, snapvol does not take
/// it as an origin.
@Suite(.mayBlock, .serialized, .enabled(if: Environment.canRun(commands: ["qemu-io"])))
struct ImageLockTests {
    /// `qemu-io` on `path`, interactive on an idle pipe: it holds the image (and its write
    /// lock) until terminated.
    static func qemuHolding(_ path: String) throws -> (Process, Pipe) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["qemu-io", "-f", "raw", path]
        let input = Pipe()
        process.standardInput = input
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(10)
        while !holdsAnImageLock(process.processIdentifier), Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        return (process, input)
    }

    /// Whether process `pid` holds an open-file-description lock (its `fdinfo` lists it).
    static func holdsAnImageLock(_ pid: Int32) -> Bool {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fdinfo")) ?? []
        return fds.contains { ((try? String(contentsOfFile: "/proc/\(pid)/fdinfo/\($0)", encoding: .utf8)) ?? "").contains("OFDLCK") }
    }

    /// qemu-io's write to `path` fails on snapvol's image lock.
    static func expectQemuCannotWrite(_ path: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let write = try Shell.run(["qemu-io", "-f", "raw", path, "-c", "write -P 0x22 0 4k"])
        #expect(write.status != 0 && write.stderr.contains("Failed to get \"write\" lock"), "\(path): \(write.stderr)",
                sourceLocation: sourceLocation)
    }

    @Test func qemuCannotWriteAnOriginSnapvolServes() throws {
        let pool = try TestPool.withOrigin("vm", size: "4M", pattern: "0x11")
        try pool.ok("snapshot", "create", "s", "--origin", "vm", "--cow", pool.file("s.cow"))
        let server = try ServeProcess(pool: pool)
        try Self.expectQemuCannotWrite(pool.file("vm.img"))
        #expect(try pool.ok("io", "read", "vm", "0", "64K").stdout.allSatisfy { $0 == 0x11 })
        #expect(server.stop() == 0)
        // Released with the server: the image is qemu's again.
        try Shell.check(["qemu-io", "-f", "raw", pool.file("vm.img"), "-c", "write -P 0x22 0 64k"])
    }

    @Test func anImageQemuWritesIsNotTakenAsAnOrigin() throws {
        let pool = try TestPool.withOrigin("vm", size: "4M", pattern: "0x11")
        let (qemu, input) = try Self.qemuHolding(pool.file("vm.img"))
        defer { if qemu.isRunning { qemu.terminate(); qemu.waitUntilExit() } }
        let status = try #require((pool.status()["origins"] as? [[String: Any]])?.first)
        #expect(status["state"] as? String == "inactive")
        let reason = status["reason"] as? String ?? ""
        #expect(reason.hasPrefix("\(pool.file("vm.img")): in use by process \(qemu.processIdentifier) (qemu-io -f raw \(pool.file("vm.img"))), which writes it"),
                "\(reason)")
        #expect(try pool.ok("status").text.contains("inactive (\(pool.file("vm.img")): in use by process \(qemu.processIdentifier)"),
                "the table says why")
        let write = try pool.run("io", "write", "vm", "0", "4K", "--pattern", "0x22")
        #expect(write.status == 1)
        #expect(write.stderr.split(separator: "\n").count == 1)

        let other = try TestPool()
        try other.ok("pool", "init")
        let registry = try Data(contentsOf: URL(fileURLWithPath: other.file("pool/registry.json")))
        let add = try other.run("origin", "add", "vm", "--path", pool.file("vm.img"))
        #expect(add.status == 1)
        #expect(add.stderr.hasPrefix("snapvol: error: \(pool.file("vm.img")): in use by process \(qemu.processIdentifier) "), "\(add.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: other.file("pool/registry.json"))) == registry)

        try input.fileHandleForWriting.close()
        qemu.waitUntilExit()
        #expect((try pool.status()["origins"] as? [[String: Any]])?.first?["state"] as? String == "active")
        try pool.ok("io", "write", "vm", "0", "4K", "--pattern", "0x22")
    }

    /// A snapshot's COW is locked as its origin is: qemu cannot write it while snapvol has it
    /// open, and a COW a qemu program holds is not taken. Its snapshot stays inactive, naming the
    /// process, and is given up (invalid, never showing the new data) when the origin is written
    /// meanwhile; a COW for a new snapshot that qemu holds is refused with nothing changed.
    @Test func aCowIsLockedAsItsOriginIs() throws {
        let pool = try TestPool.withOrigin("vm", size: "4M", pattern: "0x11")
        try pool.ok("snapshot", "create", "s", "--origin", "vm", "--cow", pool.file("s.cow"))
        let server = try ServeProcess(pool: pool)
        try Self.expectQemuCannotWrite(pool.file("s.cow"))
        #expect(server.stop() == 0)

        let (qemu, input) = try Self.qemuHolding(pool.file("s.cow"))
        defer { if qemu.isRunning { qemu.terminate(); qemu.waitUntilExit() } }
        let inUse = "\(pool.file("s.cow")): in use by process \(qemu.processIdentifier) (qemu-io -f raw \(pool.file("s.cow")))"
        #expect(try pool.ok("status").text.contains("inactive (\(inUse)"), "the table says why")
        let extend = try pool.run("snapshot", "extend", "s", "--cow-size", "8M")
        #expect(extend.status == 1)
        #expect(extend.stderr.hasPrefix("snapvol: error: \(inUse)"), "\(extend.stderr)")
        try Shell.check(["truncate", "-s", "1M", pool.file("t.cow")])
        let (other, otherInput) = try Self.qemuHolding(pool.file("t.cow"))
        defer { if other.isRunning { other.terminate(); other.waitUntilExit() } }
        let registry = try Data(contentsOf: URL(fileURLWithPath: pool.file("pool/registry.json")))
        let create = try pool.run("snapshot", "create", "t", "--origin", "vm", "--cow", pool.file("t.cow"))
        #expect(create.status == 1)
        #expect(create.stderr.hasPrefix("snapvol: error: \(pool.file("t.cow")): in use by process \(other.processIdentifier) "), "\(create.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: pool.file("pool/registry.json"))) == registry)
        try otherInput.fileHandleForWriting.close()
        other.waitUntilExit()

        try pool.ok("io", "write", "vm", "0", "4K", "--pattern", "0x22")
        try input.fileHandleForWriting.close()
        qemu.waitUntilExit()
        let snapshot = try #require(((pool.status()["origins"] as? [[String: Any]])?.first?["snapshots"] as? [[String: Any]])?.first)
        #expect(snapshot["state"] as? String == "invalid")
        #expect((snapshot["reason"] as? String ?? "").contains("its origin was written while its COW could not be opened (\(inUse)"),
                "\(snapshot)")
        let check = try SnapvolBinary.run(["check", pool.file("s.cow")]).text
        #expect(check.contains("valid: false"), "marked invalid on disk too, as the kernel reads it: \(check)")
    }

    /// A remap volume's data device and spare area are locked too while snapvol serves it; a
    /// spare area a qemu program holds leaves the volume inactive, naming the process.
    @Test func aRemapVolumesDevicesAreLocked() throws {
        let pool = try TestPool()
        try pool.ok("pool", "init")
        try Shell.check(["truncate", "-s", "1M", pool.file("disk.img")])
        try pool.ok("remap", "create", "disk", "--device", pool.file("disk.img"), "--spare", pool.file("spare.img"), "--spare-size", "256K")
        let server = try ServeProcess(pool: pool)
        for path in [pool.file("disk.img"), pool.file("spare.img")] {
            try Self.expectQemuCannotWrite(path)
        }
        #expect(server.stop() == 0)
        let (qemu, input) = try Self.qemuHolding(pool.file("spare.img"))
        defer { if qemu.isRunning { qemu.terminate(); qemu.waitUntilExit() } }
        let read = try pool.run("io", "read", "disk", "0", "4K")
        #expect(read.status == 1)
        #expect(read.stderr.contains("\(pool.file("spare.img")): in use by process \(qemu.processIdentifier) "), "\(read.stderr)")
        try input.fileHandleForWriting.close()
        qemu.waitUntilExit()
        try pool.ok("io", "read", "disk", "0", "4K")
    }

    /// The same on a block device (a loop device): qemu checks the locks there too.
    @Test(.enabled(if: Environment.canRun(needsRoot: true, commands: ["losetup", "qemu-io"])))
    func qemuCannotWriteABlockDeviceOriginSnapvolServes() throws {
        let (pool, loop) = try TestPool.withLoopOrigin(size: 4 << 20)
        defer { loop.detach() }
        let server = try ServeProcess(pool: pool)
        try Self.expectQemuCannotWrite(loop.path)
        #expect(server.stop() == 0)
        try Shell.check(["qemu-io", "-f", "raw", loop.path, "-c", "write -P 0x22 0 64k"])
    }

    /// A qcow2 file as an origin: taken (it is bytes like any other) with a warning that
    /// clients must read the export as qcow2, or, not a whole number of sectors, refused with
    /// the reason and the way out.
    @Test(.enabled(if: Environment.canRun(commands: ["qemu-img"])))
    func aQcow2OriginIsNamedForWhatItIs() throws {
        let pool = try TestPool()
        try pool.ok("pool", "init")
        try Shell.check(["qemu-img", "create", "-f", "qcow2", pool.file("small.qcow2"), "64M"])
        let refused = try pool.run("origin", "add", "small", "--path", pool.file("small.qcow2"))
        #expect(refused.status == 1)
        #expect(refused.stderr.hasSuffix("is not a positive multiple of 512 bytes (it is a qcow2 image: convert it to raw first, qemu-img convert -O raw)\n"),
                "\(refused.stderr)")
        try Shell.check(["qemu-img", "create", "-f", "qcow2", "-o", "preallocation=full", pool.file("vm.qcow2"), "4M"])
        let added = try pool.run("origin", "add", "vm", "--path", pool.file("vm.qcow2"))
        #expect(added.status == 0, "\(added.stderr)")
        #expect(added.text == "added origin vm\n")
        #expect(added.stderr == "snapvol: warning: origin vm holds a qcow2 image: snapvol snapshots and exports its bytes as they are, so clients must open the export as qcow2 (or convert the file to raw first: qemu-img convert -O raw)\n")
        #expect(try pool.run("origin", "add", "blank", "--path", pool.file("blank.img"), "--size", "1M").stderr.isEmpty)
    }
}
