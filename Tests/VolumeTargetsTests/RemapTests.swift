import BlockDevices
import ExceptionMachinery
import Testing
import TestSupport
import VolumeTargets

/// The bad-block remapper: the same exception machinery, another policy.
@Suite struct RemapTests {
    static let chunk = 4096

    static func volume(data: FaultInjectingDevice, spare: any BlockDevice, format: Bool = true) async throws -> RemapVolume {
        let geometry = try ChunkGeometry(chunkBytes: chunk)
        let store = format ? try await PersistentExceptionStore.format(spare, geometry: geometry)
                           : try await PersistentExceptionStore.open(spare, requiredChunkBytes: chunk)
        return try await RemapVolume.open(name: "disk", data: data, store: store)
    }

    @Test func writesToBadSectorsSucceedAndSurviveARestart() async throws {
        let data = FaultInjectingDevice(wrapping: patternedDevice("data", size: 256 << 10))
        let spare = MemoryBlockDevice(name: "spare", size: 64 << 10)
        data.fail(.write, in: 8192 + 512..<8192 + 1024)
        data.fail(.read, in: 8192 + 512..<8192 + 1024)
        var volume = try await Self.volume(data: data, spare: spare)
        try await volume.writeBytes(pattern(0xAB, 100), at: 8192 + 600)
        #expect(volume.status.remapped == 1)
        var expected = Array((data.base as! MemoryBlockDevice).contents[8192..<12288])
        for i in 512..<1024 { expected[i] = 0 }            // the unreadable sector is lost
        for i in 600..<700 { expected[i] = 0xAB }
        #expect(try await volume.readBytes(at: 8192, count: 4096) == expected)
        volume = try await Self.volume(data: data, spare: spare, format: false)
        #expect(volume.status.remapped == 1)
        #expect(try await volume.readBytes(at: 8192, count: 4096) == expected)
    }

    /// A retired volume (removed from its pool) refuses writes and remaps, and writes nothing;
    /// reads still answer.
    @Test func aRetiredVolumeRefusesWritesAndRemaps() async throws {
        let data = FaultInjectingDevice(wrapping: patternedDevice("data", size: 64 << 10))
        let volume = try await Self.volume(data: data, spare: MemoryBlockDevice(name: "spare", size: 64 << 10))
        let before = (data.base as! MemoryBlockDevice).contents
        volume.retire()
        await #expect(throws: VolumeError.self) { try await volume.writeBytes(pattern(0x11, 4096), at: 0) }
        await #expect(throws: VolumeError.self) { try await volume.remap(chunk: 1) }
        #expect((data.base as! MemoryBlockDevice).contents == before)
        #expect(try await volume.readBytes(at: 0, count: 4096) == Array(before[0..<4096]))
    }

    /// On a sparse data file: written chunks and remapped ones are data (a remapped hole too:
    /// its copy lives in the spare area), the rest holes.
    @Test func dataMapShowsTheDataFilesHolesAndTheRemappedChunks() async throws {
        let dir = try TemporaryDirectory()
        let data = FaultInjectingDevice(wrapping: try FileBlockDevice.create(path: dir.file("data.img"), size: 1 << 20))
        let volume = try await Self.volume(data: data, spare: MemoryBlockDevice(name: "spare", size: 64 << 10))
        try await volume.writeBytes(pattern(0x11, 8192), at: 65536)
        #expect(try await volume.remap(chunk: 100))
        let map = try await volume.dataMap(offset: 0, length: 1 << 20)
        #expect(map.end == 1 << 20)
        let written: Range<UInt64> = 65536..<73728, remapped: Range<UInt64> = 409_600..<413_696   // chunk 100
        #expect(map.ranges == [written, remapped])
        #expect(try await volume.readBytes(at: 100 * 4096, count: 4096) == pattern(0, 4096))
    }

    @Test func failedReadReportsTheErrorAndTheNextWriteRemaps() async throws {
        let data = FaultInjectingDevice(wrapping: patternedDevice("data", size: 64 << 10))
        let volume = try await Self.volume(data: data, spare: MemoryBlockDevice(size: 64 << 10))
        data.fail(.read, in: 0..<512)
        await #expect(throws: DeviceError.self) { _ = try await volume.readBytes(at: 0, count: 512) }
        #expect(volume.status.marked == 1)
        try await volume.writeBytes(pattern(1, 512), at: 0)
        #expect(volume.status.remapped == 1)
        #expect(try await volume.readBytes(at: 0, count: 512) == pattern(1, 512))
    }

    @Test func proactiveRemapCopiesReadableData() async throws {
        let device = patternedDevice("data", size: 64 << 10)
        let data = FaultInjectingDevice(wrapping: device)
        let volume = try await Self.volume(data: data, spare: MemoryBlockDevice(size: 64 << 10))
        #expect(try await volume.remap(chunk: 3))
        #expect(try await !volume.remap(chunk: 3))
        data.fail(.read, in: 3 * 4096..<4 * 4096)
        #expect(try await volume.readBytes(at: 3 * 4096, count: 4096) == Array(device.contents[(3 * 4096)..<(4 * 4096)]))
        await #expect(throws: VolumeError.self) { try await volume.remap(chunk: 999) }
    }

    @Test func fullSpareIsAClearError() async throws {
        let data = FaultInjectingDevice(wrapping: patternedDevice("data", size: 64 << 10))
        let volume = try await Self.volume(data: data, spare: MemoryBlockDevice(size: 3 * 4096))
        data.fail(.write)
        try await volume.writeBytes(pattern(1, 10), at: 0)
        let error = await #expect(throws: VolumeError.self) { try await volume.writeBytes(pattern(2, 10), at: 4096) }
        #expect(error?.description.contains("spare area full") == true)
    }

    /// Model-based: random bad sectors, writes, reads and restarts against a reference model.
    @Test func matchesTheReferenceModel() async throws {
        var generator = SeededGenerator.fromEnvironment()
        let size = 64 * Self.chunk
        let base = patternedDevice("data", size: size)
        let data = FaultInjectingDevice(wrapping: base)
        let spare = MemoryBlockDevice(name: "spare", size: 80 * Self.chunk)
        var volume = try await Self.volume(data: data, spare: spare)
        var model = RemapModel(image: base.contents, chunk: Self.chunk)
        for step in 0..<400 {
            let roll = Int.random(in: 0..<100, using: &generator)
            if roll < 8 {
                let sector = Int.random(in: 0..<(size / 512), using: &generator)
                model.bad.insert(sector)
                data.fail(.read, in: UInt64(sector * 512)..<UInt64(sector * 512 + 512))
                data.fail(.write, in: UInt64(sector * 512)..<UInt64(sector * 512 + 512))
            } else if roll < 13 {
                volume = try await Self.volume(data: data, spare: spare, format: false)
                model.marked = []
            } else {
                let offset = Int.random(in: 0..<size, using: &generator)
                let length = Int.random(in: 1...min(3 * Self.chunk, size - offset), using: &generator)
                if roll < 55 {
                    let bytes = patternBytes(seed: UInt8.random(in: 0...255, using: &generator), count: length)
                    try await volume.writeBytes(bytes, at: UInt64(offset))
                    model.write(bytes, at: offset)
                } else {
                    let expected = model.read(offset, length)
                    do {
                        let bytes = try await volume.readBytes(at: UInt64(offset), count: length)
                        #expect(expected != nil, "step \(step): read should fail; seed \(generator.seed)")
                        #expect(bytes == expected, "step \(step): read differs; seed \(generator.seed)")
                    } catch {
                        #expect(expected == nil, "step \(step): unexpected \(error); seed \(generator.seed)")
                    }
                }
            }
            if volume.status.remapped != model.remapped.count {
                Issue.record("step \(step): \(volume.status.remapped) remapped, model \(model.remapped.count); seed \(generator.seed)")
                return
            }
        }
    }
}

/// The remapper as plain bytes: what a read returns, which sectors are bad, what is remapped.
struct RemapModel {
    var image: [UInt8]
    let chunk: Int
    var bad: Set<Int> = []
    var remapped: Set<Int> = []
    var marked: Set<Int> = []

    func touchesBad(_ offset: Int, _ length: Int) -> Bool {
        (offset / 512...(offset + length - 1) / 512).contains { bad.contains($0) }
    }

    /// Pieces of an I/O, one per chunk: (chunk, offset, length).
    func pieces(_ offset: Int, _ length: Int) -> [(Int, Int, Int)] {
        var result: [(Int, Int, Int)] = []
        var at = offset
        while at < offset + length {
            let end = min((at / chunk + 1) * chunk, offset + length)
            result.append((at / chunk, at, end - at))
            at = end
        }
        return result
    }

    mutating func write(_ bytes: [UInt8], at offset: Int) {
        for (c, at, length) in pieces(offset, bytes.count) {
            if !remapped.contains(c) && (marked.contains(c) || touchesBad(at, length)) {
                for sector in (c * chunk / 512)..<((c + 1) * chunk / 512) where bad.contains(sector) {
                    image.replaceSubrange(sector * 512..<sector * 512 + 512, with: repeatElement(0, count: 512))
                }
                remapped.insert(c)
                marked.remove(c)
            }
            image.replaceSubrange(at..<at + length, with: bytes[(at - offset)..<(at - offset + length)])
        }
    }

    mutating func read(_ offset: Int, _ length: Int) -> [UInt8]? {
        for (c, at, pieceLength) in pieces(offset, length) where !remapped.contains(c) && touchesBad(at, pieceLength) {
            marked.insert(c)
            return nil
        }
        return Array(image[offset..<offset + length])
    }
}
