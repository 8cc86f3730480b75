import ExceptionMachinery
import Testing

@Suite struct ChunkGeometryTests {
    @Test(arguments: [512, 4096, 16384, 65536, 1 << 30])
    func acceptsPowersOfTwoInRange(_ bytes: Int) throws {
        let geometry = try ChunkGeometry(chunkBytes: bytes)
        #expect(geometry.chunkBytes == bytes)
        #expect(1 << geometry.shift == bytes)
    }

    @Test func refusesBadSizes() {
        #expect(throws: GeometryError.notPowerOfTwo(3072)) { try ChunkGeometry(chunkBytes: 3072) }
        #expect(throws: GeometryError.outOfRange(256)) { try ChunkGeometry(chunkBytes: 256) }
        #expect(throws: GeometryError.outOfRange(1 << 31)) { try ChunkGeometry(chunkBytes: 1 << 31) }
        #expect(throws: GeometryError.notPowerOfTwo(0)) { try ChunkGeometry(chunkBytes: 0) }
    }

    @Test func piecesSplitAtChunkBoundaries() throws {
        let geometry = try ChunkGeometry(chunkBytes: 4096)
        let pieces = Array(geometry.pieces(offset: 4000, length: 9000))
        #expect(pieces.map(\.chunk) == [0, 1, 2, 3])
        #expect(pieces.map(\.length) == [96, 4096, 4096, 712])
        #expect(pieces.map(\.bufferOffset) == [0, 96, 4192, 8288])
        #expect(pieces[1].coversWholeChunk(of: geometry))
        #expect(!pieces[0].coversWholeChunk(of: geometry))
        #expect(geometry.chunks(offset: 4000, length: 9000) == 0...3)
        #expect(geometry.chunks(offset: 4000, length: 0) == nil)
    }
}

@Suite struct CowLayoutTests {
    @Test func areaLocationsAndSkipRuleFollowTheKernel() throws {
        let layout = CowLayout(geometry: try ChunkGeometry(chunkBytes: 4096))
        #expect(layout.exceptionsPerArea == 256)
        #expect(layout.areaLocation(0) == 1)
        #expect(layout.areaLocation(1) == 258)
        #expect(layout.areaOffset(1) == 258 * 4096)
        #expect(layout.isMetadata(0) && layout.isMetadata(1) && layout.isMetadata(258))
        #expect(!layout.isMetadata(2) && !layout.isMetadata(257) && !layout.isMetadata(259))
        #expect(layout.skippingMetadata(258) == 259)
        #expect(layout.skippingMetadata(257) == 257)
        #expect(layout.chunksToHoldWholeOrigin(1024) == 1 + 1024 + (1024 + 256) / 256)
    }

    @Test func headerAndAreaEncodingRoundTrip() throws {
        let header = CowHeader(valid: true, chunkSectors: 32)
        let bytes = header.encoded(chunkBytes: 16384)
        #expect(Array(bytes[0..<16]) == [0x53, 0x6E, 0x41, 0x70, 1, 0, 0, 0, 1, 0, 0, 0, 32, 0, 0, 0])
        #expect(CowHeader(decoding: bytes) == header)
        let records = [DiskException(old: 0, new: 2), DiskException(old: 0x1_0000_0001, new: 3)]
        let area = MetadataArea.encode(records, chunkBytes: 4096)
        #expect(MetadataArea.decode(area).records == records)
        #expect(MetadataArea.decode(area).full == false)
    }
}
