import Foundation
import Testing
import TestSupport

/// Remap volumes from the command line: create, I/O through them, proactive remaps, status,
/// and refusals. (Failing sectors are injected in the engine's tests: a file cannot fail on demand.)
@Suite struct RemapCLITests {
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
}
