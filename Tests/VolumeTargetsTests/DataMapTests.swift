import BlockDevices
import ExceptionMachinery
import Testing
import TestSupport
import VolumeTargets

@Suite struct DataMapTests {
    @Test func rangesAreClippedMergedAndListedWithTheHolesBetween() {
        let map = RangeMap(start: 100, end: 1000, ranges: [900..<2000, 0..<150, 140..<200, 200..<300, 500..<600])
        #expect(map.ranges == [100..<300, 500..<600, 900..<1000])
        #expect(map.extents.map(\.length) == [200, 200, 100, 300, 100])
        #expect(map.extents.map(\.marked) == [true, false, true, false, true])
        #expect(RangeMap(start: 0, end: 10, ranges: []).extents.map(\.marked) == [false])
        #expect(RangeMap.whole(5, 9).ranges == [5..<9])
    }

    /// Origin and snapshot on sparse files, written at random (seeded) in whole 4 KiB blocks of
    /// non-zero bytes, so the reference model is the set of blocks written: every range a map
    /// calls a hole holds none of them and reads as zeros (its first and last blocks, read
    /// back), and every block written is data. The snapshot's exception map names the blocks
    /// written since it was taken, exactly, also when its table is bounded and mostly evicted.
    @Test(arguments: [false, true])
    func holesReadAsZerosAndWrittenRangesAreData(boundedTable: Bool) async throws {
        var generator = SeededGenerator.fromEnvironment()
        let dir = try TemporaryDirectory()
        let blocks = 10_240   // 40 MiB: at 4K chunks more than one map's worth (Origin.mapChunks)
        let origin = Origin(name: "origin", device: try FileBlockDevice.create(path: dir.file("origin.img"), size: UInt64(blocks * 4096)),
                            writeBack: true)
        var written = Set<Int>()
        var writes: [Range<Int>] = []
        func writeOrigin(_ blocksWritten: Range<Int>, _ generator: inout SeededGenerator) async throws {
            let byte = UInt8.random(in: 1...255, using: &generator)
            try await origin.writeBytes(pattern(byte, blocksWritten.count * 4096), at: UInt64(blocksWritten.lowerBound * 4096))
            written.formUnion(blocksWritten)
            writes.append(blocksWritten)
        }
        func randomBlocks(_ generator: inout SeededGenerator) -> Range<Int> {
            let count = Int.random(in: 1...16, using: &generator)
            let first = Int.random(in: 0...(blocks - count), using: &generator)
            return first..<first + count
        }
        for _ in 0..<20 { try await writeOrigin(randomBlocks(&generator), &generator) }
        let cow = try FileBlockDevice.create(path: dir.file("snap.cow"), size: UInt64(blocks * 4096 * 2))
        // Bounded: a 2 KiB table of 4-chunk buckets, so most lookups find their bucket evicted.
        let store = try await PersistentExceptionStore.format(cow, geometry: try ChunkGeometry(chunkBytes: 4096))
        let snapshot = try await origin.attach(name: "snap", store: store,
                                               cacheBudget: boundedTable ? ExceptionCache.Budget(bytes: 2048, bucketShift: 2) : nil)
        let writtenBeforeSnapshot = written
        let writesBeforeSnapshot = writes.count
        // Half of these overwrite earlier data, so the snapshot holds copies of data, not only of holes.
        for index in 0..<20 {
            try await writeOrigin(index.isMultiple(of: 2) ? writes.randomElement(using: &generator)! : randomBlocks(&generator), &generator)
        }
        try await origin.flush()

        // The snapshot holds exactly the 4 KiB chunks written on the origin since it was taken.
        let changed = Set(writes[writesBeforeSnapshot...].flatMap { $0 })
        var held: [Range<UInt64>] = []
        var offset: UInt64 = 0
        while offset < snapshot.size {
            let map = try await snapshot.exceptionMap(offset: offset, length: snapshot.size - offset)
            held += map.ranges
            offset = map.end
        }
        #expect(Set(held.flatMap { Int($0.lowerBound / 4096)..<Int($0.upperBound / 4096) }) == changed, "seed \(generator.seed)")

        for (volume, model) in [(origin as any Volume, written), (snapshot, writtenBeforeSnapshot)] {
            let maps = try await wholeMap(of: volume)
            if volume === snapshot { #expect(maps.count == 2) }
            for map in maps {
                var cursor = map.start
                for extent in map.extents {
                    if !extent.marked {
                        try await expectHole(volume, cursor..<cursor + extent.length, model, seed: generator.seed)
                    }
                    cursor += extent.length
                }
            }
            let data = maps.flatMap(\.ranges)
            for block in model {
                let range = UInt64(block * 4096)..<UInt64(block * 4096 + 4096)
                #expect(data.contains { $0.lowerBound <= range.lowerBound && range.upperBound <= $0.upperBound },
                        "\(volume.name): written block \(block) is not data (seed \(generator.seed))")
            }
        }
    }

    private func expectHole(_ volume: any Volume, _ hole: Range<UInt64>, _ model: Set<Int>, seed: UInt64) async throws {
        let firstBlock = Int(hole.lowerBound / 4096), lastBlock = Int((hole.upperBound - 1) / 4096)
        #expect(!(firstBlock...lastBlock).contains { model.contains($0) }, "\(volume.name): hole \(hole) was written (seed \(seed))")
        for offset in Set([hole.lowerBound, max(hole.lowerBound, hole.upperBound - 4096)]) {
            let bytes = try await volume.readBytes(at: offset, count: Int(min(4096, hole.upperBound - offset)))
            #expect(bytes.allSatisfy { $0 == 0 }, "\(volume.name): hole \(hole) holds data at \(offset) (seed \(seed))")
        }
    }

    /// Asks for the whole volume until the maps cover it (a map may cover only a prefix).
    private func wholeMap(of volume: any Volume) async throws -> [RangeMap] {
        var maps: [RangeMap] = []
        var offset: UInt64 = 0
        while offset < volume.size {
            let map = try await volume.dataMap(offset: offset, length: volume.size - offset)
            #expect(map.start == offset && map.end > offset && map.end <= volume.size)
            maps.append(map)
            offset = map.end
        }
        return maps
    }
}
