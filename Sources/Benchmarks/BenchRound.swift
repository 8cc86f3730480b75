import BlockDevices
import Foundation
import ExceptionMachinery
import VolumeTargets

/// One round of the benchmark: one run at one chunk size.
///
/// Invariant: the origin is left as the round found it (every snapshot detached and deleted,
/// and the merge restores the content the first snapshot saw).
struct BenchRound {
    let configuration: BenchConfiguration
    let volumes: BenchVolumes
    let device: FileBlockDevice
    let geometry: ChunkGeometry
    let run: Int
    var measurements: [Measurement] = []
    var figures: [Figure] = []

    init(configuration: BenchConfiguration, volumes: BenchVolumes, device: FileBlockDevice, geometry: ChunkGeometry, run: Int) {
        self.configuration = configuration
        self.volumes = volumes
        self.device = device
        self.geometry = geometry
        self.run = run
    }

    private var sequential: IOPattern { .sequential(volumeBytes: configuration.originBytes, blockBytes: 1 << 20) }
    private var random: IOPattern {
        .random(volumeBytes: configuration.originBytes, blockBytes: 4096, count: configuration.randomOperations,
                seed: configuration.seed)
    }
    private var randomReads: IOPattern { random.reordered(seed: configuration.seed &+ 1) }

    mutating func measure() async throws {
        try await measureRaw()
        let origin = Origin(name: "bench-origin", device: device, writeBack: true)
        try await measureNoSnapshots(origin)
        try await measureOneSnapshotSequential(origin)
        try await measureOneSnapshotRandom(origin)
        try await measureManySnapshots(origin)
        try await measureWriteThrough()
    }

    // MARK: cases

    private mutating func measureRaw() async throws {
        let raw = IOTarget.device(device)
        try await record(Names.rawSeqWrite, chunked: false, IODriver.run(sequential, .write, on: raw))
        try await record(Names.rawRandWrite, chunked: false, IODriver.run(random, .write, on: raw))
        try await record(Names.rawSeqRead, chunked: false, IODriver.run(sequential, .read, on: raw))
        try await record(Names.rawRandRead, chunked: false, IODriver.run(randomReads, .read, on: raw))
        try await record(Names.rawSeqReadCold, chunked: false, coldRead(sequential, raw))
        try await record(Names.rawRandReadCold, chunked: false, coldRead(randomReads, raw))
        let adjacent = try await rawWrite(sequential)
        try await record(Names.copyFloor, vs: Names.rawSeqWrite, measureCopyFloor(), adjacent: adjacent)
    }

    /// What a first write cannot beat: per chunk, read the old data, write it to a COW file,
    /// write the new data; one flush of both files at the end (no metadata at all).
    private func measureCopyFloor() async throws -> Sample {
        let cowPath = "\(volumes.directory)/bench-floor.img"
        defer { try? FileManager.default.removeItem(atPath: cowPath) }
        try? FileManager.default.removeItem(atPath: cowPath)
        let cow = try FileBlockDevice.create(path: cowPath, size: configuration.originBytes)
        let old = AlignedBuffer(count: geometry.chunkBytes)
        let new = AlignedBuffer(count: sequential.blockBytes)
        new.fill(0xE1)
        return try await IODriver.time(bytes: sequential.bytes, operations: sequential.offsets.count) {
            for offset in sequential.offsets {
                var chunk = offset
                while chunk < offset + UInt64(new.count) {
                    try await device.read(into: old.mutableBytes, at: chunk)
                    try await cow.write(old.bytes, at: chunk)
                    chunk += UInt64(old.count)
                }
                try await device.write(new.bytes, at: offset)
            }
            try await cow.flush()
            try await device.flush()
        }
    }

    private mutating func measureNoSnapshots(_ origin: Origin) async throws {
        let target = IOTarget.volume(origin)
        var raw = try await rawWrite(sequential)
        try await record("origin seq 1M write, no snapshot", vs: Names.rawSeqWrite, IODriver.run(sequential, .write, on: target), adjacent: raw)
        raw = try await rawWrite(random)
        try await record("origin rand 4K write, no snapshot", vs: Names.rawRandWrite, IODriver.run(random, .write, on: target), adjacent: raw)
        // Origin reads take the same path with or without snapshots (they are never copied).
        for (pattern, label, baseline) in [(sequential, "seq 1M", Names.rawSeqRead), (randomReads, "rand 4K", Names.rawRandRead)] {
            let (engine, adjacent) = try await timeWarmReads(pattern, target, against: .device(device))
            record("origin \(label) read", vs: baseline, engine, adjacent: adjacent)
        }
    }

    /// First write and rewrite with one snapshot, reads of a snapshot whose chunks are all in
    /// the COW, activation of that (full) COW, and merging it back.
    private mutating func measureOneSnapshotSequential(_ origin: Origin) async throws {
        var snapshot = try await volumes.addSnapshot(to: origin, geometry: geometry)
        try await measureFirstWriteAndRewrite(sequential, "seq 1M", of: origin, snapshot, against: Names.rawSeqWrite, fills: (0xA1, 0xA2))
        recordTable("exception table bytes per exception, sequential pattern", origin.cacheFigures(of: snapshot))
        try await measureSnapshotReads(snapshot, chunks: "in COW")
        snapshot = try await measureActivation(origin, snapshot)
        try await measureMerge(snapshot, into: origin, "merge a full snapshot into its origin", against: sequential,
                               Names.rawSeqWrite)
        await volumes.removeSnapshots([snapshot], from: origin)
    }

    /// First writes of `pattern` to the origin with `snapshot` attached (every chunk copied),
    /// then the same writes again (every chunk already copied), each against raw writes of the
    /// pattern timed just before it.
    private mutating func measureFirstWriteAndRewrite(_ pattern: IOPattern, _ label: String, of origin: Origin, _ snapshot: Snapshot,
                                                      against baseline: String, fills: (first: UInt8, again: UInt8)) async throws {
        let target = IOTarget.volume(origin, snapshots: [snapshot])
        for (phase, fill) in [("first write", fills.first), ("rewrite", fills.again)] {
            let raw = try await rawWrite(pattern)
            try await record(Names.originWrite(label, snapshots: 1, phase), vs: baseline,
                             IODriver.run(pattern, .write, on: target, fill: fill), adjacent: raw)
        }
    }

    /// Merges `snapshot` into `origin`, timed against raw writes of `pattern` just before it;
    /// its operations are the chunks merged.
    private mutating func measureMerge(_ snapshot: Snapshot, into origin: Origin, _ name: String, against pattern: IOPattern,
                                       _ baseline: String) async throws {
        let exceptions = origin.status(of: snapshot).exceptions
        let raw = try await rawWrite(pattern)
        try await record(name, vs: baseline, IODriver.time(bytes: UInt64(exceptions * geometry.chunkBytes), operations: exceptions) {
            try await origin.merge(snapshot)
        }, adjacent: raw)
    }

    /// Detaches `snapshot` and attaches its COW again, timed against reading its metadata raw.
    private mutating func measureActivation(_ origin: Origin, _ snapshot: Snapshot) async throws -> Snapshot {
        let cow = snapshot.store.device
        let areas = snapshot.store.usage().metadataSectors / UInt64(geometry.chunkSectors) - 1
        await origin.detach(snapshot)
        let metadataBytes = RawMetadataRead.bytes(areas: areas, geometry: geometry)
        // Both from the device: the COW's pages are dropped before each.
        try await (cow as? FileBlockDevice)?.dropCachedPages()
        try await record("raw read of a full COW's metadata", chunked: true, RawMetadataRead.time(cow, geometry: geometry, areas: areas))
        var attached: Snapshot?
        try await (cow as? FileBlockDevice)?.dropCachedPages()
        try await record("activation of a full COW", vs: "raw read of a full COW's metadata", IODriver.time(bytes: metadataBytes) {
            let store = try await PersistentExceptionStore.open(cow, originChunks: geometry.chunksCovering(configuration.originBytes))
            attached = try await origin.attach(name: snapshot.name, store: store)
        })
        return attached!
    }

    /// Random first writes and rewrites on a fresh snapshot, after reading it while all its
    /// chunks are still on the origin; then merging it (one chunk per run, scattered over the
    /// origin) against as many random 4 KiB raw writes.
    private mutating func measureOneSnapshotRandom(_ origin: Origin) async throws {
        let snapshot = try await volumes.addSnapshot(to: origin, geometry: geometry)
        try await measureSnapshotReads(snapshot, chunks: "on origin")
        try await measureFirstWriteAndRewrite(random, "rand 4K", of: origin, snapshot, against: Names.rawRandWrite, fills: (0xB1, 0xB2))
        recordTable("exception table bytes per exception, random pattern", origin.cacheFigures(of: snapshot))
        try await measureMerge(snapshot, into: origin, "merge a snapshot of random chunks", against: random, Names.rawRandWrite)
        await volumes.removeSnapshots([snapshot], from: origin)
    }

    /// First writes with N snapshots, each against first writes with one snapshot timed just
    /// before it (on a fresh snapshot of its own, removed again). Both also record the bytes
    /// the engine read and wrote per byte written to the origin, and the rate it wrote them at:
    /// what "one origin read for all snapshots, one extra write per snapshot" means, measured.
    /// The sequential pair is measured again with the origin out of the page cache, where the
    /// copies' one shared read of each old chunk comes from the device.
    private mutating func measureManySnapshots(_ origin: Origin) async throws {
        let n = configuration.manySnapshots
        for (pattern, label, cached) in [(sequential, "seq 1M", true), (random, "rand 4K", true), (sequential, "seq 1M", false)] {
            let phase = cached ? "first write" : "first write, origin not cached"
            let single = try await firstWrite(pattern, label, phase, on: origin, snapshots: 1, originCached: cached)
            let baseline = Names.originWrite(label, snapshots: 1, phase)
            // The cached 1-snapshot case has its row already (measureOneSnapshot...).
            if !cached { record(baseline, single) }
            let many = try await firstWrite(pattern, label, phase, on: origin, snapshots: n, originCached: cached)
            record(Names.originWrite(label, snapshots: n, phase), vs: baseline, many, adjacent: single)
        }
    }

    /// First writes of `pattern` with `count` fresh snapshots, which are removed afterwards;
    /// unless `originCached`, the origin's pages leave the page cache first. `phase` names the
    /// case in its byte counts ("seq 1M first write, origin not cached, 8 snapshots").
    private mutating func firstWrite(_ pattern: IOPattern, _ label: String, _ phase: String, on origin: Origin,
                                     snapshots count: Int, originCached: Bool) async throws -> Sample {
        var snapshots: [Snapshot] = []
        for _ in 0..<count { snapshots.append(try await volumes.addSnapshot(to: origin, geometry: geometry)) }
        if !originCached { try await device.dropCachedPages() }
        let (sample, moved) = try await ProcessIO.measuring {
            try await IODriver.run(pattern, .write, on: .volume(origin, snapshots: snapshots), fill: 0xC1)
        }
        await volumes.removeSnapshots(snapshots, from: origin)
        if let moved { recordAmplification(moved, of: sample, "\(label) \(phase), \(Names.snapshots(count))") }
        return sample
    }

    private mutating func recordAmplification(_ moved: ProcessIO, of sample: Sample, _ label: String) {
        let origin = Double(sample.bytes)
        recordFigure("bytes read per origin byte, \(label)", Double(moved.readBytes) / origin, unit: "x")
        recordFigure("bytes written per origin byte, \(label)", Double(moved.writtenBytes) / origin, unit: "x")
        recordFigure("write rate to devices, \(label)", Double(moved.writtenBytes) / 1_048_576 / sample.seconds, unit: "MiB/s")
    }

    /// The four snapshot read cases (sequential and random; from the page cache, then from the
    /// device), each against the same reads of the origin file timed just before it.
    private mutating func measureSnapshotReads(_ snapshot: Snapshot, chunks place: String) async throws {
        let reads = IOTarget.volume(snapshot)
        let raw = IOTarget.device(device)
        let patterns = [(sequential, "seq 1M", Names.rawSeqRead, Names.rawSeqReadCold),
                        (randomReads, "rand 4K", Names.rawRandRead, Names.rawRandReadCold)]
        // Warm means in the page cache: copies leave it once durable (as dm-snapshot's bypass
        // it), so the snapshot is read once first. The cold cases below time reading them back.
        _ = try await IODriver.run(sequential, .read, on: reads)
        for (pattern, label, baseline, _) in patterns {
            let (engine, adjacent) = try await timeWarmReads(pattern, reads, against: raw)
            record("snapshot \(label) read, chunks \(place)", vs: baseline, engine, adjacent: adjacent)
        }
        for (pattern, label, _, baseline) in patterns {
            let adjacent = try await coldRead(pattern, raw)
            try await record("snapshot \(label) read, chunks \(place), cold", vs: baseline, coldRead(pattern, reads, snapshot),
                             adjacent: adjacent)
        }
        // The cold random read left only its own 4 KiB blocks of the origin in the page cache:
        // a first write's copy would then read the rest of each chunk from the disk, more of it
        // the larger the chunk (random first writes measured 8,823-10,657 IOPS at 16K chunks
        // against 13,823-13,848 at 4K). Every write case finds the origin cached, as its raw
        // baseline does.
        _ = try await IODriver.run(sequential, .read, on: raw)
    }

    /// Times warm reads of `pattern` on `engine` and on `raw` `warmRepetitions` times each,
    /// alternating, and returns each side's median repetition. From the page cache, a default
    /// run's random case takes about 10 ms: one preemption on this shared machine moves such a
    /// sample by a tenth (one raw sample of a session-10 run took 29 ms, its neighbours 9-13),
    /// and a single pair decided whether a ratio met 0.9.
    private func timeWarmReads(_ pattern: IOPattern, _ engine: IOTarget, against raw: IOTarget) async throws -> (Sample, Sample) {
        var engineSamples: [Sample] = [], rawSamples: [Sample] = []
        for _ in 0..<Self.warmRepetitions {
            rawSamples.append(try await IODriver.run(pattern, .read, on: raw))
            engineSamples.append(try await IODriver.run(pattern, .read, on: engine))
        }
        return (Sample.median(engineSamples), Sample.median(rawSamples))
    }

    /// How many times each warm read case and its baseline are timed.
    static let warmRepetitions = 5

    /// First writes with write-back off: each write returns only once it is on the device. The
    /// random case sends a quarter of the random requests (its raw baseline too): at about a
    /// thousand a second it was a quarter of a default run's time.
    private mutating func measureWriteThrough() async throws {
        let origin = Origin(name: "bench-origin", device: device, writeBack: false)
        let random = IOPattern.random(volumeBytes: configuration.originBytes, blockBytes: 4096,
                                      count: max(1, configuration.randomOperations / 4), seed: configuration.seed)
        for (pattern, label, baseline) in [(sequential, "seq 1M", Names.rawSeqWrite), (random, "rand 4K", Names.rawRandWrite)] {
            let name = Names.originWrite(label, snapshots: 1, "first write, write-through")
            let raw = try await rawWrite(pattern)
            let snapshot = try await volumes.addSnapshot(to: origin, geometry: geometry)
            try await record(name, vs: baseline, IODriver.run(pattern, .write, on: .volume(origin, snapshots: [snapshot]), fill: 0xD1),
                             adjacent: raw)
            await volumes.removeSnapshots([snapshot], from: origin)
        }
    }

    /// Reads `pattern` after dropping the origin's (and the snapshot's COW's) cached pages.
    private func coldRead(_ pattern: IOPattern, _ target: IOTarget, _ snapshot: Snapshot? = nil) async throws -> Sample {
        try await device.dropCachedPages()
        if let cow = snapshot?.store.device as? FileBlockDevice { try await cow.dropCachedPages() }
        return try await IODriver.run(pattern, .read, on: target)
    }

    // MARK: recording

    private mutating func record(_ name: String, vs baseline: String? = nil, chunked: Bool = true, _ sample: Sample,
                                 adjacent: Sample? = nil) {
        measurements.append(Measurement(name: name, chunkBytes: chunked ? geometry.chunkBytes : nil, run: run,
                                        sample: sample, baseline: baseline, adjacentBaseline: adjacent))
    }

    /// Raw writes of `pattern` on the origin file, timed just before a write case that is
    /// compared with them. Every ratio uses such an adjacent baseline: the round's first raw
    /// figures are taken minutes earlier, in another state of the page cache and the disk (a
    /// pass-through write measured 0.47-0.65 of them but 0.95-1.12 of raw writes timed next to
    /// it; raw random reads moved between 2,426 and 4,130 MiB/s within one run). Only called
    /// while every chunk the pattern touches is unshared (no snapshot) or already copied, so
    /// no snapshot's content changes.
    private func rawWrite(_ pattern: IOPattern) async throws -> Sample {
        try await IODriver.run(pattern, .write, on: .device(device), fill: 0x3C)
    }

    private mutating func recordTable(_ name: String, _ table: ExceptionCache.Figures) {
        guard table.exceptions > 0 else { return }
        recordFigure(name, Double(table.residentBytes) / Double(table.exceptions), unit: "bytes")
    }

    private mutating func recordFigure(_ name: String, _ value: Double, unit: String) {
        figures.append(Figure(name: name, chunkBytes: geometry.chunkBytes, run: run, value: value, unit: unit))
    }

    enum Names {
        static let rawSeqWrite = "raw seq 1M write"
        static let rawRandWrite = "raw rand 4K write"
        static let rawSeqRead = "raw seq 1M read"
        static let rawRandRead = "raw rand 4K read"
        static let rawSeqReadCold = "raw seq 1M read, cold"
        static let rawRandReadCold = "raw rand 4K read, cold"
        static let copyFloor = "raw copy-before-write floor, seq 1M"

        /// An origin write case: "origin seq 1M write, 1 snapshot, first write" and its kin.
        static func originWrite(_ label: String, snapshots: Int, _ phase: String) -> String {
            "origin \(label) write, \(Self.snapshots(snapshots)), \(phase)"
        }

        /// "1 snapshot", "8 snapshots".
        static func snapshots(_ count: Int) -> String { "\(count) snapshot\(count == 1 ? "" : "s")" }
    }
}

extension IOTarget {
    /// A volume; writes end with a flush of the volume and of every COW in `snapshots`.
    static func volume(_ volume: any Volume, snapshots: [Snapshot] = []) -> IOTarget {
        IOTarget(read: { try await volume.read(into: $0, at: $1) },
                 write: { try await volume.write($0, at: $1) },
                 flush: {
                     try await volume.flush()
                     for snapshot in snapshots { try await snapshot.flush() }
                 })
    }
}
