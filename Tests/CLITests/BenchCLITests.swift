import Foundation
import Testing
import TestSupport

/// `snapvol bench` end to end at a tiny size: every workload is measured, every engine figure
/// has its same-round ratio, and the files it made are gone afterwards. (Its figures are for
/// Docs/PERFORMANCE.md, never asserted here: timing belongs in the benchmark, not in tests.)
@Suite(.mayBlock) struct BenchCLITests {
    @Test func benchMeasuresEveryWorkloadAndCleansUp() throws {
        let dir = try TemporaryDirectory(prefix: "snapvol-bench")
        let result = try SnapvolBinary.run(["bench", "--dir", dir.path, "--size", "4M", "--runs", "1", "--chunk", "4K",
                                            "--random-ops", "64", "--snapshots", "2", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: result.stdout) as? [String: Any])
        let rows = try #require(json["summary"] as? [[String: Any]])
        let names = Set(rows.compactMap { $0["name"] as? String })
        for expected in ["raw seq 1M write", "raw copy-before-write floor, seq 1M", "origin seq 1M write, 1 snapshot, first write",
                         "origin rand 4K write, 1 snapshot, rewrite", "origin rand 4K write, 2 snapshots, first write",
                         "snapshot rand 4K read, chunks in COW, cold", "origin rand 4K read", "activation of a full COW",
                         "merge a full snapshot into its origin", "merge a snapshot of random chunks",
                         "origin rand 4K write, 1 snapshot, first write, write-through",
                         "origin seq 1M write, 1 snapshot, first write, origin not cached",
                         "origin seq 1M write, 2 snapshots, first write, origin not cached"] {
            #expect(names.contains(expected), "missing \(expected)")
        }
        for row in rows where row["baseline"] is String {
            let ratio = row["medianRatio"] as? Double ?? -1
            #expect(ratio > 0 && ratio.isFinite, "\(row["name"] ?? "?") has no ratio")
            // Every engine case is compared with its baseline timed just before it.
            let name = row["name"] as? String ?? ""
            if name.hasPrefix("origin") || name.hasPrefix("snapshot") || name.hasPrefix("merge") {
                #expect((row["baseline"] as? String ?? "").hasSuffix(", just before"), "\(name): \(row["baseline"] ?? "?")")
            }
        }
        #if os(Linux)
        try expectOneReadAndOneWritePerSnapshot(json)
        #endif
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        #expect(leftovers.isEmpty, "bench left \(leftovers)")
    }

    /// The design claim behind the many-snapshot target, from the bytes the engine moved:
    /// sequential first writes read each old chunk once however many snapshots need it, and
    /// write it once per snapshot (plus the new data once, plus a little metadata).
    private func expectOneReadAndOneWritePerSnapshot(_ json: [String: Any]) throws {
        let report = try #require(json["report"] as? [String: Any])
        let figures = try #require(report["figures"] as? [[String: Any]])
        func figure(_ name: String) -> Double {
            figures.first { $0["name"] as? String == name }?["value"] as? Double ?? -1
        }
        for (snapshots, label) in [(1, "1 snapshot"), (2, "2 snapshots"), (1, "origin not cached, 1 snapshot"),
                                   (2, "origin not cached, 2 snapshots")] {
            let read = figure("bytes read per origin byte, seq 1M first write, \(label)")
            let written = figure("bytes written per origin byte, seq 1M first write, \(label)")
            #expect(read >= 1 && read < 1.05, "\(label): read \(read) bytes per origin byte")
            let floor = Double(1 + snapshots)
            #expect(written >= floor && written < floor * 1.05, "\(label): wrote \(written) bytes per origin byte")
        }
    }

    /// Under the malloc interposer (built with the tests, next to `snapvol`), every case also
    /// reports its heap allocations per operation, and reads of chunks in the COW and on the
    /// origin add none to those of the bench's own loop, measured on the raw file (none in a
    /// release build; in a debug build the loop's unspecialized async call makes one).
    /// (Without the interposer the table says they were not counted;
    /// `benchMeasuresEveryWorkloadAndCleansUp` runs that way.)
    @Test func benchCountsAllocationsUnderTheInterposer() throws {
        let library = URL(fileURLWithPath: SnapvolBinary.path).deletingLastPathComponent()
            .appendingPathComponent("libMallocInterposerSwift.so").path
        try #require(FileManager.default.fileExists(atPath: library), "no \(library): the interposer is built with the tests")
        let dir = try TemporaryDirectory(prefix: "snapvol-bench")
        let result = try SnapvolBinary.run(["bench", "--dir", dir.path, "--size", "4M", "--runs", "1", "--chunk", "16K",
                                            "--random-ops", "1024", "--snapshots", "2", "--json"],
                                           environment: ["LD_PRELOAD": library])
        #expect(result.status == 0, "\(result.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: result.stdout) as? [String: Any])
        let rows = try #require(json["summary"] as? [[String: Any]])
        func allocations(_ name: String) -> Double? { rows.first { $0["name"] as? String == name }?["allocationsPerOperation"] as? Double }
        for row in rows {
            #expect(row["allocationsPerOperation"] is Double, "\(row["name"] ?? "?") has no allocation count")
        }
        let loop = try #require(allocations("raw rand 4K read"))
        for hot in ["snapshot rand 4K read, chunks in COW", "snapshot rand 4K read, chunks on origin", "origin rand 4K read"] {
            // Within 0.05 of the loop: an allocation per read adds 1, while the process's own
            // stray work added 1 in 256 reads in one CI run.
            let perRead = try #require(allocations(hot))
            #expect(perRead < loop + 0.05, "\(hot): \(perRead) allocations per read, the loop's own \(loop)")
        }
        #expect((allocations("origin rand 4K write, 1 snapshot, first write") ?? 0) > 0, "a first write's pending exception is a heap object")
    }

    @Test func badBenchSettingsAreRefused() throws {
        let dir = try TemporaryDirectory(prefix: "snapvol-bench")
        for arguments in [["--chunk", "3K"], ["--size", "100K"], ["--runs", "0"], ["--dir", dir.file("missing")]] {
            let result = try SnapvolBinary.run(["bench", "--dir", dir.path] + arguments)
            #expect(result.status != 0, "\(arguments)")
            #expect(result.stderr.split(separator: "\n").count == 1, "\(arguments): \(result.stderr)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)
    }
}
