import BlockDevices
import ExceptionMachinery
import Foundation
import VolumeTargets

/// The 2003 to-do list's example for the exception cache: a 100 GiB origin, a 5 GiB COW,
/// 16 KiB chunks, the COW filled completely (327,359 exceptions), in a sequential and in a
/// uniformly random pattern. The origin is a sparse file; the COW is filled through the
/// store's own prepare/commit (metadata only: data chunks stay holes, for raw and engine alike).
///
/// Invariant: every ratio compares two figures of the same round on the same files.
struct CacheExample {
    let directory: String
    let runs: Int
    let reads: Int
    let seed: UInt64
    var originBytes: UInt64 = 100 << 30
    var cowBytes: UInt64 = 5 << 30
    let geometry = try! ChunkGeometry(chunkBytes: 16 << 10)
    let budget = ExceptionCache.Budget(bytes: 1 << 20)

    func measure(into report: inout BenchReport, progress: @Sendable (String) -> Void) async throws {
        for pattern in ["sequential", "random"] {
            progress("cache example: filling a 5 GiB COW, \(pattern) pattern")
            let paths = (origin: "\(directory)/cache-origin.img", cow: "\(directory)/cache-cow.img")
            defer { for path in [paths.origin, paths.cow] { try? FileManager.default.removeItem(atPath: path) } }
            for path in [paths.origin, paths.cow] { try? FileManager.default.removeItem(atPath: path) }
            let originDevice = try FileBlockDevice.create(path: paths.origin, size: originBytes)
            let cowDevice = try FileBlockDevice.create(path: paths.cow, size: cowBytes)
            try await fill(cowDevice, random: pattern == "random")
            for run in 1...runs {
                progress("cache example: \(pattern) pattern, run \(run)/\(runs)")
                try await round(run: run, pattern: pattern, origin: originDevice, cow: cowDevice, into: &report)
            }
        }
    }

    /// Commits exceptions until the store is full, a metadata area's worth at a time (one
    /// group commit each).
    private func fill(_ cow: FileBlockDevice, random: Bool) async throws {
        let store = try await PersistentExceptionStore.format(cow, geometry: geometry, originChunks: geometry.wholeChunks(in: originBytes))
        var generator = SplitMix64(seed: seed)
        var used = Set<ChunkIndex>()
        var nextSequential: ChunkIndex = 0
        let originChunks = geometry.wholeChunks(in: originBytes)
        var full = false
        while !full {
            var batch: [(ChunkIndex, ChunkIndex)] = []
            while batch.count < store.layout.exceptionsPerArea {
                guard let new = try? store.prepareException() else {
                    full = true
                    break
                }
                var old = nextSequential
                if random {
                    repeat { old = generator.next() % originChunks } while !used.insert(old).inserted
                } else {
                    nextSequential += 1
                }
                batch.append((old, new))
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (old, new) in batch { group.addTask { try await store.commitException(old: old, new: new) } }
                try await group.waitForAll()
            }
        }
    }

    private func round(run: Int, pattern: String, origin device: FileBlockDevice, cow: FileBlockDevice,
                       into report: inout BenchReport) async throws {
        let layout = CowLayout(geometry: geometry)
        // Every area that fits on the device (the store is full: all of them hold records).
        let areas = (geometry.wholeChunks(in: cow.size) - 2) / (UInt64(layout.exceptionsPerArea) + 1) + 1
        let metadataBytes = RawMetadataRead.bytes(areas: areas, geometry: geometry)
        let rawName = "raw read of the COW's metadata areas (\(pattern))"
        let raw = try await RawMetadataRead.time(cow, geometry: geometry, areas: areas)
        report.measurements.append(Measurement(name: rawName, chunkBytes: geometry.chunkBytes, run: run, sample: raw, baseline: nil))
        let rawReads = IOPattern.random(volumeBytes: originBytes, blockBytes: 4096, count: reads, seed: seed &+ UInt64(run))
        report.measurements.append(Measurement(name: "raw rand 4K read of the origin (\(pattern))", chunkBytes: geometry.chunkBytes,
                                               run: run, sample: try await IODriver.run(rawReads, .read, on: .device(device)), baseline: nil))
        var unlimitedReadName = ""
        for (label, budget) in [("unlimited", nil), ("1 MiB", Optional(budget))] {
            let origin = Origin(name: "cache-origin", device: device)
            var snapshot: Snapshot?
            let activation = try await IODriver.time(bytes: metadataBytes) {
                let store = try await PersistentExceptionStore.open(cow, originChunks: geometry.wholeChunks(in: originBytes))
                snapshot = try await origin.attach(name: "cache-snap", store: store, cacheBudget: budget)
            }
            report.measurements.append(Measurement(name: "activation, table \(label) (\(pattern))", chunkBytes: geometry.chunkBytes,
                                                   run: run, sample: activation, baseline: rawName))
            let figures = origin.cacheFigures(of: snapshot!)
            report.figures.append(Figure(name: "table bytes per exception, \(label) (\(pattern))", chunkBytes: geometry.chunkBytes,
                                         run: run, value: Double(figures.residentBytes) / Double(max(figures.exceptions, 1)), unit: "bytes"))
            report.figures.append(Figure(name: "table resident bytes, \(label) (\(pattern))", chunkBytes: geometry.chunkBytes,
                                         run: run, value: Double(figures.residentBytes), unit: "bytes"))
            report.figures.append(Figure(name: "exceptions (\(pattern))", chunkBytes: geometry.chunkBytes,
                                         run: run, value: Double(figures.exceptions), unit: ""))
            let readName = "snapshot rand 4K read, table \(label) (\(pattern))"
            let sample = try await IODriver.run(rawReads, .read, on: .volume(snapshot!))
            report.measurements.append(Measurement(name: readName, chunkBytes: geometry.chunkBytes, run: run, sample: sample,
                                                   baseline: budget == nil ? "raw rand 4K read of the origin (\(pattern))" : unlimitedReadName))
            if budget == nil { unlimitedReadName = readName }
            let after = origin.cacheFigures(of: snapshot!)
            report.figures.append(Figure(name: "metadata reads per snapshot read, \(label) (\(pattern))", chunkBytes: geometry.chunkBytes,
                                         run: run, value: Double(after.areaReads) / Double(reads), unit: ""))
            report.figures.append(Figure(name: "table resident bytes after the reads, \(label) (\(pattern))", chunkBytes: geometry.chunkBytes,
                                         run: run, value: Double(after.residentBytes), unit: "bytes"))
            await origin.detach(snapshot!)
        }
    }
}
