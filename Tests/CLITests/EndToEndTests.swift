import Foundation
import Testing
import TestSupport

/// The built `snapvol` binary driven as a process: pool, origin, snapshots at three chunk sizes,
/// writes, dumps, exact status figures, merge.
@Suite(.mayBlock) struct EndToEndTests {
    static let originSize = 64 << 20

    /// Writes `bytes` at `offset` through `io write --input`.
    static func write(_ pool: TestPool, _ volume: String, _ offset: Int, _ bytes: [UInt8]) throws {
        let input = pool.file("input-\(UUID().uuidString.prefix(6))")
        try Data(bytes).write(to: URL(fileURLWithPath: input))
        defer { try? FileManager.default.removeItem(atPath: input) }
        try pool.ok("io", "write", volume, "\(offset)", "\(bytes.count)", "--input", input)
    }

    static func dump(_ pool: TestPool, _ volume: String) throws -> [UInt8] {
        let output = pool.file("dump-\(volume)")
        try pool.ok("io", "dump", volume, "--output", output)
        defer { try? FileManager.default.removeItem(atPath: output) }
        return [UInt8](FileManager.default.contents(atPath: output)!)
    }

    /// Run twice: by the CLI alone, and with `snapvol serve` owning the pool (every command is
    /// then forwarded over the control socket and must behave the same).
    @Test(arguments: [false, true])
    func snapshotsAtThreeChunkSizesDumpTheirPointInTimeAndMergeRestores(withServer: Bool) throws {
        var generator = SeededGenerator.fromEnvironment()
        let pool = try TestPool()
        try pool.ok("pool", "init")
        let server = withServer ? try ServeProcess(pool: pool) : nil
        defer { server?.stop() }
        try pool.ok("origin", "add", "data", "--path", pool.file("origin.img"), "--size", "64M")
        var image = patternBytes(seed: 7, count: Self.originSize)
        try Self.write(pool, "data", 0, image)

        var snapshots: [(name: String, chunk: Int, image: [UInt8], written: Set<Int>)] = []
        for (index, chunk) in [4096, 16384, 65536].enumerated() {
            let name = "snap\(chunk / 1024)k"
            try pool.ok("snapshot", "create", name, "--origin", "data", "--cow", pool.file("\(name).cow"),
                        "--chunk-size", "\(chunk / 1024)K", "--cow-size", "32M")
            snapshots.append((name, chunk, image, []))
            for _ in 0..<(6 + index * 3) {
                let offset = Int.random(in: 0..<(Self.originSize - 300_000), using: &generator)
                let length = Int.random(in: 1...300_000, using: &generator)
                let bytes = patternBytes(seed: UInt8.random(in: 0...255, using: &generator), count: length)
                try Self.write(pool, "data", offset, bytes)
                image.replaceSubrange(offset..<offset + length, with: bytes)
                for i in snapshots.indices {
                    let c = snapshots[i].chunk
                    snapshots[i].written.formUnion((offset / c)...((offset + length - 1) / c))
                }
            }
        }
        #expect(sameBytes(try Self.dump(pool, "data"), image), "seed \(generator.seed)")
        for snapshot in snapshots {
            #expect(sameBytes(try Self.dump(pool, snapshot.name), snapshot.image), "\(snapshot.name), seed \(generator.seed)")
            let status = try #require(try pool.snapshotStatus(snapshot.name))
            #expect(status["exceptions"] as? Int == snapshot.written.count, "\(snapshot.name), seed \(generator.seed)")
            #expect(status["chunk_size"] as? Int == snapshot.chunk)
            #expect(status["state"] as? String == "active")
            #expect(status["pending_copies"] as? Int == 0)
            let epa = snapshot.chunk / 16
            let records = snapshot.written.count
            let nextFree = 2 + records + records / epa   // data chunks plus the areas skipped
            #expect(status["cow_used_bytes"] as? Int == nextFree * snapshot.chunk, "\(snapshot.name), seed \(generator.seed)")
            #expect(status["cow_total_bytes"] as? Int == 32 << 20)
        }
        let check = try SnapvolBinary.run(["check", pool.file("snap16k.cow"), "--origin-size", "64M"])
        #expect(check.status == 0)
        #expect(check.text.contains("exceptions: \(snapshots[1].written.count)"))

        try pool.ok("snapshot", "merge", "snap16k", "--no-progress")
        #expect(sameBytes(try Self.dump(pool, "data"), snapshots[1].image), "seed \(generator.seed)")
        #expect(try pool.snapshotStatus("snap16k") == nil)
        #expect(!FileManager.default.fileExists(atPath: pool.file("snap16k.cow")))
        // The other snapshots kept their own point in time through the merge.
        #expect(sameBytes(try Self.dump(pool, "snap4k"), snapshots[0].image), "seed \(generator.seed)")
        #expect(sameBytes(try Self.dump(pool, "snap64k"), snapshots[2].image), "seed \(generator.seed)")
        try pool.ok("snapshot", "delete", "snap4k")
        #expect(!FileManager.default.fileExists(atPath: pool.file("snap4k.cow")))
        let table = try pool.ok("status").text
        #expect(table.contains("snap64k") && table.contains("DATA%") && !table.contains("snap4k"))
    }

    /// A sparse origin and its snapshot dump as sparse images holding the same bytes; a range
    /// read to standard output is written out whole, holes as zeros; `io map` lists the data,
    /// and the chunks the snapshot holds.
    @Test func dumpsOfASparseVolumeAreSparse() throws {
        let pool = try TestPool.sparseOriginWithSnapshot(origin: "vm", snapshot: "s", size: Self.originSize, second: 32 << 20,
                                                         changed: (32 << 20, 4096))
        var image = [UInt8](repeating: 0, count: Self.originSize)
        image.replaceSubrange(0..<(1 << 20), with: repeatElement(0x41, count: 1 << 20))
        image.replaceSubrange((32 << 20)..<(32 << 20) + 65536, with: repeatElement(0x42, count: 65536))
        let snapshotImage = image
        image.replaceSubrange((32 << 20)..<(32 << 20) + 4096, with: repeatElement(0x43, count: 4096))
        for (volume, expected) in [("vm", image), ("s", snapshotImage)] {
            let output = pool.file("\(volume).dump")
            try pool.ok("io", "dump", volume, "--output", output)
            #expect(sameBytes([UInt8](FileManager.default.contents(atPath: output)!), expected), "\(volume)")
            var info = stat()
            #expect(stat(output, &info) == 0)
            #expect(Int(info.st_blocks) * 512 <= 2 << 20, "\(volume): \(info.st_blocks * 512) bytes allocated for 1.06 MiB of data")
        }
        let read = try pool.ok("io", "read", "s", "\((32 << 20) - 4096)", "8K").stdout
        #expect([UInt8](read) == [UInt8](repeating: 0, count: 4096) + [UInt8](repeating: 0x42, count: 4096))

        // `io map`: data and holes of both; the one chunk the snapshot holds (copied at 32M).
        let mib = 1 << 20
        let dataAndHoles = "0 \(mib) data\n\(mib) \(31 * mib) hole\n\(32 * mib) 65536 data\n\(32 * mib + 65536) \(32 * mib - 65536) hole\n"
        #expect(try pool.ok("io", "map", "vm").text == dataAndHoles)
        #expect(try pool.ok("io", "map", "s").text == dataAndHoles)
        #expect(try pool.ok("io", "map", "s", "--exceptions").text
                == "0 \(32 * mib) shared\n\(32 * mib) 65536 held\n\(32 * mib + 65536) \(32 * mib - 65536) shared\n")
        let refused = try pool.run("io", "map", "vm", "--exceptions")
        #expect(refused.status == 1 && refused.stderr == "snapvol: error: 'vm' is not a snapshot: --exceptions lists a snapshot's chunks\n")
    }

    /// A first write into a sparse origin's holes copies nothing: the old chunks are zeros and
    /// the COW file, past its last copy, is a hole that reads as zeros already. The COW file
    /// stays sparse, the snapshot reads exactly as before, `check` finds it clean, and a merge
    /// puts the zeros back.
    @Test func firstWritesIntoHolesCopyNothing() throws {
        let pool = try TestPool.withOrigin("vm", size: "64M", pattern: "0x11", written: "4M")
        try pool.ok("snapshot", "create", "s", "--origin", "vm", "--cow", pool.file("s.cow"), "--cow-size", "64M", "--chunk-size", "64K")
        try pool.ok("io", "write", "vm", "0", "16M", "--pattern", "0x22")
        #expect(try pool.snapshotStatus("s")?["exceptions"] as? Int == 256)
        var info = stat()
        #expect(stat(pool.file("s.cow"), &info) == 0)
        #expect(Int(info.st_blocks) * 512 < 5 << 20, "\(info.st_blocks * 512) bytes allocated for 4 MiB of copied data")
        let snapshot = [UInt8](try pool.ok("io", "read", "s", "0", "16M").stdout)
        #expect(sameBytes(snapshot, [UInt8](repeating: 0x11, count: 4 << 20) + [UInt8](repeating: 0, count: 12 << 20)))
        #expect(try SnapvolBinary.run(["check", pool.file("s.cow")]).status == 0)
        try pool.ok("snapshot", "merge", "s", "--no-progress")
        let merged = [UInt8](try pool.ok("io", "read", "vm", "0", "16M").stdout)
        #expect(sameBytes(merged, [UInt8](repeating: 0x11, count: 4 << 20) + [UInt8](repeating: 0, count: 12 << 20)))
    }

    /// `io discard`: the origin gives back what the snapshot does not share (a hole in its
    /// file), `--zero` zeroes the rest by copying first, the snapshot never changes, and a range
    /// past the end is refused with nothing changed.
    @Test func discardFreesUnsharedChunksAndZeroCopiesShared() throws {
        let pool = try TestPool()
        let mib = 1 << 20
        try pool.ok("pool", "init")
        try pool.ok("origin", "add", "vm", "--path", pool.file("vm.img"), "--size", "16M")
        try pool.ok("io", "write", "vm", "0", "8M", "--pattern", "0x41")
        try pool.ok("snapshot", "create", "s", "--origin", "vm", "--cow", pool.file("s.cow"), "--chunk-size", "64K", "--cow-size", "16M")
        try pool.ok("io", "write", "vm", "2M", "1M", "--pattern", "0x42")
        let refused = try pool.run("io", "discard", "vm", "15M", "2M")
        #expect(refused.status == 1 && refused.stderr == "snapvol: error: vm: 2097152 bytes at offset 15728640 reach past the end (size 16777216)\n")
        #expect(try pool.ok("io", "discard", "vm", "0", "16M").text
                == "discarded 16777216 bytes: \(mib) deallocated, \(15 * mib) kept (shared with a snapshot, or the device cannot deallocate)\n")
        #expect(try pool.ok("io", "map", "vm").text == "0 \(2 * mib) data\n\(2 * mib) \(mib) hole\n\(3 * mib) \(5 * mib) data\n\(8 * mib) \(8 * mib) hole\n")
        #expect(try pool.ok("io", "discard", "s", "0", "1M").text == "discarded \(mib) bytes: none deallocated (a snapshot's COW chunks stay allocated)\n")
        #expect(try pool.ok("io", "discard", "vm", "1M", "2M", "--zero").text == "zeroed \(2 * mib) bytes: \(mib) deallocated, \(mib) written\n")
        #expect([UInt8](try pool.ok("io", "read", "vm", "1M", "2M").stdout) == [UInt8](repeating: 0, count: 2 * mib))
        var snapshotImage = [UInt8](repeating: 0, count: 16 * mib)
        snapshotImage.replaceSubrange(0..<8 * mib, with: repeatElement(0x41, count: 8 * mib))
        #expect(sameBytes([UInt8](try pool.ok("io", "read", "s", "0", "16M").stdout), snapshotImage))
        #expect(try pool.ok("io", "map", "s", "--exceptions").text == "0 \(mib) shared\n\(mib) \(2 * mib) held\n\(3 * mib) \(13 * mib) shared\n")
    }

    @Test func extendGrowsTheCowAndDefaultsFollowTheIssue() throws {
        let pool = try TestPool()
        try pool.ok("pool", "init")
        try pool.ok("origin", "add", "vm", "--path", pool.file("vm.img"), "--size", "10M")
        try pool.ok("snapshot", "create", "s", "--origin", "vm", "--cow", pool.file("s.cow"))
        let status = try #require(try pool.snapshotStatus("s"))
        #expect(status["chunk_size"] as? Int == 16384)
        #expect(status["cow_total_bytes"] as? Int == 2_097_152)   // 20% of 10 MiB, whole 16 KiB chunks
        try pool.ok("snapshot", "extend", "s", "--cow-size", "4M")
        #expect(try pool.snapshotStatus("s")?["cow_total_bytes"] as? Int == 4 << 20)
        let shrink = try pool.run("snapshot", "extend", "s", "--cow-size", "1M")
        #expect(shrink.status != 0)
    }
}
