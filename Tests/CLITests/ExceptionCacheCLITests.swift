import Foundation
import Testing
import TestSupport

/// `--exception-cache`: recorded in the pool, applied at every activation, shown by status,
/// and invisible in the data (every command is a fresh process, so each one activates the
/// snapshot under the budget and reads evicted parts back from the COW's metadata).
@Suite(.mayBlock) struct ExceptionCacheCLITests {
    @Test func aSmallBudgetKeepsTheDataAndShowsInStatus() throws {
        var generator = SeededGenerator.fromEnvironment()
        let pool = try TestPool()
        try pool.ok("pool", "init")
        try pool.ok("origin", "add", "disk", "--path", pool.file("disk.img"), "--size", "4G")
        try pool.ok("snapshot", "create", "s", "--origin", "disk", "--cow", pool.file("s.cow"), "--cow-size", "8M",
                    "--chunk-size", "4K", "--exception-cache", "4K")
        // Scattered first writes over a sparse 4 GiB origin: most land in buckets (16 MiB) of their own.
        var offsets: [UInt64] = []
        while offsets.count < 96 {
            let offset = UInt64.random(in: 0..<(1 << 20), using: &generator) * 4096
            if !offsets.contains(offset) { offsets.append(offset) }
        }
        for (index, offset) in offsets.enumerated() {
            try pool.ok("io", "write", "disk", "\(offset)", "4096", "--pattern", "\(index % 250 + 1)")
        }
        for (index, offset) in offsets.enumerated() where index % 4 == 0 {
            let origin = [UInt8](try pool.ok("io", "read", "disk", "\(offset)", "4096").stdout)
            #expect(origin == [UInt8](repeating: UInt8(index % 250 + 1), count: 4096), "origin at \(offset), seed \(generator.seed)")
            let snapshot = [UInt8](try pool.ok("io", "read", "s", "\(offset)", "4096").stdout)
            #expect(snapshot == [UInt8](repeating: 0, count: 4096), "snapshot at \(offset), seed \(generator.seed)")
        }
        let snapshot = try #require(try pool.snapshotStatus("s"))
        #expect(snapshot["exceptions"] as? Int == offsets.count)
        let table = try #require(snapshot["table"] as? [String: Any])
        #expect(table["budget_bytes"] as? Int == 4096)
        #expect((table["resident_bytes"] as? Int ?? .max) <= 4096 + 2048, "\(table)")
        #expect((table["resident_exceptions"] as? Int ?? .max) < offsets.count, "the budget must have evicted: \(table)")
        #expect(try pool.ok("status").text.contains("HIT%"))
        // Every write above was flushed by its own command: nothing is left queued.
        let origin = try #require((try pool.status()["origins"] as? [[String: Any]])?.first)
        #expect(origin["queued_writes"] as? Int == 0 && origin["queued_bytes"] as? Int == 0, "\(origin)")
        let record = try String(contentsOfFile: pool.path + "/registry.json", encoding: .utf8)
        #expect(record.contains("\"exception_cache\" : 4096"))
    }

    @Test func badBudgetsAreRefusedWithoutTouchingAnything() throws {
        let pool = try TestPool()
        try pool.ok("pool", "init")
        try pool.ok("origin", "add", "disk", "--path", pool.file("disk.img"), "--size", "4M")
        let before = fingerprint([pool.dir.path])
        for budget in ["1K", "lots", "-5"] {
            let result = try pool.run("snapshot", "create", "s", "--origin", "disk", "--cow", pool.file("s.cow"), "--exception-cache", budget)
            #expect(result.status != 0, "\(budget)")
            #expect(result.stderr.split(separator: "\n").count == 1 && result.stderr.contains("exception-cache"), "\(budget): \(result.stderr)")
        }
        #expect(fingerprint([pool.dir.path]) == before)
    }
}
