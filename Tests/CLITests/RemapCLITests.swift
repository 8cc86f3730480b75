import Foundation
import Testing
import TestSupport

/// Remap volumes from the command line: create, I/O through them, proactive remaps, status,
/// and refusals. (Failing sectors are injected in the engine's tests: a file cannot fail on demand.)
@Suite(.mayBlock) struct RemapCLITests {
    @Test func remapVolumeLifecycle() throws {
        let pool = try TestPool()
        try pool.ok("pool", "init")
        try Data(patternBytes(seed: 9, count: 1 << 20)).write(to: URL(fileURLWithPath: pool.file("disk.img")))
        try pool.ok("remap", "create", "disk", "--device", pool.file("disk.img"), "--spare", pool.file("spare.img"), "--spare-size", "256K")
        #expect([UInt8](try pool.ok("io", "read", "disk", "8192", "4").stdout) == Array(patternBytes(seed: 9, count: 8196)[8192..<8196]))
        #expect(try pool.ok("remap", "add", "disk", "2").text.contains("remapped chunk 2"))
        #expect(try pool.ok("remap", "add", "disk", "8K").text.contains("already remapped"))
        try pool.ok("io", "write", "disk", "8192", "4096", "--pattern", "0x77")
        // The chunk now lives in the spare area: the data file keeps its old bytes there.
        let dataFile = [UInt8](FileManager.default.contents(atPath: pool.file("disk.img"))!)
        #expect(Array(dataFile[8192..<8196]) == Array(patternBytes(seed: 9, count: 8196)[8192..<8196]))
        #expect([UInt8](try pool.ok("io", "read", "disk", "8192", "4").stdout) == [0x77, 0x77, 0x77, 0x77])
        let status = try pool.status()
        let remap = try #require((status["remaps"] as? [[String: Any]])?.first)
        #expect(remap["remapped"] as? Int == 1)
        #expect(remap["spare_total_bytes"] as? Int == 256 << 10)
        #expect(remap["spare_used_bytes"] as? Int == 3 * 4096)
        #expect(remap["state"] as? String == "active")
        #expect(try pool.ok("status").text.contains("(remap)"))
        let check = try SnapvolBinary.run(["check", pool.file("spare.img")])
        #expect(check.status == 0 && check.text.contains("exceptions: 1"))
    }

    @Test func remapRefusals() throws {
        let pool = try TestPool()
        try pool.ok("pool", "init")
        try Data(count: 1 << 20).write(to: URL(fileURLWithPath: pool.file("disk.img")))
        try pool.ok("remap", "create", "disk", "--device", pool.file("disk.img"), "--spare", pool.file("spare.img"))
        let before = fingerprint([pool.dir.path])
        for arguments in [["remap", "add", "disk", "99999"], ["remap", "add", "nope", "1"],
                          ["remap", "create", "d2", "--device", pool.file("disk.img"), "--spare", pool.file("s2.img")],
                          ["remap", "create", "d3", "--device", pool.file("missing.img"), "--spare", pool.file("s3.img")],
                          ["remap", "create", "d4", "--device", pool.file("spare.img"), "--spare", pool.file("s4.img")]] {
            let result = try SnapvolBinary.run(arguments + ["--pool", pool.path])
            #expect(result.status != 0, "\(arguments)")
            #expect(result.stderr.split(separator: "\n").count == 1, "\(arguments): \(result.stderr)")
        }
        #expect(fingerprint([pool.dir.path]) == before)
    }

    /// `remap remove`: a volume with nothing remapped goes with the spare area snapvol made; one
    /// with remapped chunks is refused (their data lives only in the spare area) until `--force`,
    /// which keeps the spare area; the data device is never touched.
    @Test func removingARemapVolumeNeverLosesARemappedChunk() throws {
        let pool = try TestPool()
        try pool.ok("pool", "init")
        for name in ["a", "b"] {
            try Data(patternBytes(seed: 3, count: 1 << 20)).write(to: URL(fileURLWithPath: pool.file("\(name).img")))
            try pool.ok("remap", "create", name, "--device", pool.file("\(name).img"), "--spare", pool.file("\(name).spare"))
        }
        #expect(try pool.ok("remap", "remove", "a").text == "removed remap volume a\n")
        #expect(!FileManager.default.fileExists(atPath: pool.file("a.spare")))
        #expect(FileManager.default.contents(atPath: pool.file("a.img")) == Data(patternBytes(seed: 3, count: 1 << 20)))

        try pool.ok("remap", "add", "b", "2")
        try pool.ok("io", "write", "b", "8K", "4K", "--pattern", "0x77")
        let before = fingerprint([pool.dir.path])
        let cases: [([String], String)] = [
            (["b"], "1 chunk(s) of 'b' live only in its spare area \(pool.file("b.spare")): copy the volume's data elsewhere first (io dump), or add --force to remove it and keep the spare area"),
            (["nope"], "no volume named 'nope' in this pool"),
        ]
        for (arguments, message) in cases {
            let result = try pool.run(arguments: ["remap", "remove"] + arguments)
            #expect(result.status == 1, "\(arguments)")
            #expect(result.stderr == "snapvol: error: \(message)\n", "\(arguments): \(result.stderr)")
        }
        #expect(fingerprint([pool.dir.path]) == before)
        #expect(try pool.ok("remap", "remove", "b", "--force").text
                == "removed remap volume b; kept its spare area \(pool.file("b.spare")) (1 remapped chunk left in it)\n")
        let check = try SnapvolBinary.run(["check", pool.file("b.spare")])
        #expect(check.status == 0 && check.text.contains("exceptions: 1"), "the chunk is still there: \(check.text)")
        #expect((try pool.status()["remaps"] as? [[String: Any]])?.isEmpty ?? true)
        // The names and paths are free again.
        try pool.ok("remap", "create", "b", "--device", pool.file("b.img"), "--spare", pool.file("b2.spare"))
    }

    /// A remap volume whose spare area is missing: whether chunks live there is not known, so
    /// only `--force` removes it.
    @Test func aRemapVolumeWithoutItsSpareAreaNeedsForce() throws {
        let pool = try TestPool()
        try pool.ok("pool", "init")
        try Data(count: 1 << 20).write(to: URL(fileURLWithPath: pool.file("d.img")))
        try pool.ok("remap", "create", "d", "--device", pool.file("d.img"), "--spare", pool.file("d.spare"))
        try FileManager.default.moveItem(atPath: pool.file("d.spare"), toPath: pool.file("d.away"))
        let refused = try pool.run("remap", "remove", "d")
        #expect(refused.status == 1)
        #expect(refused.stderr.hasPrefix("snapvol: error: the spare area of 'd' cannot be read"), "\(refused.stderr)")
        #expect(try pool.ok("remap", "remove", "d", "--force").text
                == "removed remap volume d; kept its spare area \(pool.file("d.spare")) (its content not known)\n")
    }

    /// Through a server: a client of the volume refuses the removal until `--force`
    /// disconnects it; the export is gone afterwards.
    @Test func aServedRemapVolumeInUseIsRemovedOnlyWithForce() throws {
        let pool = try TestPool()
        try pool.ok("pool", "init")
        try Data(count: 1 << 20).write(to: URL(fileURLWithPath: pool.file("d.img")))
        try pool.ok("remap", "create", "d", "--device", pool.file("d.img"), "--spare", pool.file("d.spare"))
        let server = try ServeProcess(pool: pool)
        let (client, replies) = try RawSocket.transmitting(server.socket, export: "d")
        #expect(replies.count == 86)
        let refused = try pool.run("remap", "remove", "d")
        #expect(refused.stderr.hasPrefix("snapvol: error: volume 'd' is in use by 1 NBD client"), "\(refused.stderr)")
        #expect(try pool.ok("remap", "remove", "d", "--force").text == "removed remap volume d\n")
        #expect(client.closedByPeer())
        let (_, gone) = try RawSocket.transmitting(server.socket, export: "d")
        #expect(gone.count != 86)
        #expect(server.stop() == 0)
    }
}
