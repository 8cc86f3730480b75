import Foundation
import Testing
import TestSupport

/// A merge killed at a random instant resumes when run again, and the origin ends up equal to
/// the snapshot; in between, the origin already reads as the merged result.
@Suite(.mayBlock) struct MergeResumeTests {
    @Test func mergeKilledMidwayResumes() throws {
        var generator = SeededGenerator.fromEnvironment()
        let pool = try TestPool()
        try pool.ok("pool", "init")
        try pool.ok("origin", "add", "data", "--path", pool.file("data.img"), "--size", "32M")
        try pool.ok("io", "write", "data", "0", "32M", "--pattern", "0x11")
        try pool.ok("snapshot", "create", "snap", "--origin", "data", "--cow", pool.file("snap.cow"), "--chunk-size", "4K",
                    "--cow-size", "40M")
        try pool.ok("io", "write", "data", "0", "32M", "--pattern", "0x22")

        let merge = Process()
        merge.executableURL = URL(fileURLWithPath: SnapvolBinary.path)
        merge.arguments = ["snapshot", "merge", "snap", "--no-progress", "--pool", pool.path]
        merge.standardOutput = FileHandle.nullDevice
        merge.standardError = FileHandle.nullDevice
        try merge.run()
        Thread.sleep(forTimeInterval: Double.random(in: 0.05...0.6, using: &generator))
        kill(merge.processIdentifier, SIGKILL)
        merge.waitUntilExit()

        if let snapshot = try pool.snapshotStatus("snap") {
            if snapshot["state"] as? String == "active" {
                // Killed before the merge was recorded (a loaded machine can take longer than the
                // sleep to start the process): the merge never began, so the origin is untouched.
                #expect([UInt8](try pool.ok("io", "read", "data", "31M", "4").stdout) == [0x22, 0x22, 0x22, 0x22],
                        "seed \(generator.seed)")
            } else {
                #expect(snapshot["state"] as? String == "merging", "seed \(generator.seed)")
                // Mid-merge, the origin already shows the snapshot's content everywhere.
                #expect([UInt8](try pool.ok("io", "read", "data", "31M", "4").stdout) == [0x11, 0x11, 0x11, 0x11])
                #expect(try pool.run("snapshot", "delete", "snap").status != 0)
                // Neither deleted nor renamed while marked merging: only the merge may go on.
                let refusal = "snapvol: error: snapshot 'snap' is being merged: run 'snapshot merge snap' to finish\n"
                #expect(try pool.run("snapshot", "delete", "snap").stderr == refusal)
                #expect(try pool.run("snapshot", "rename", "snap", "other").stderr == refusal)
            }
            try pool.ok("snapshot", "merge", "snap", "--no-progress")
        }
        #expect(try pool.snapshotStatus("snap") == nil)
        let dump = pool.file("data.dump")
        try pool.ok("io", "dump", "data", "--output", dump)
        #expect(sameBytes([UInt8](FileManager.default.contents(atPath: dump)!), [UInt8](repeating: 0x11, count: 32 << 20)),
                "seed \(generator.seed)")
    }
}
