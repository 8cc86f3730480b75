import BlockDevices
import ExceptionMachinery

/// The baseline activation is compared with: a COW's header and its first `areas` metadata
/// areas read with plain reads, one after another, nothing decoded.
enum RawMetadataRead {
    static func bytes(areas: UInt64, geometry: ChunkGeometry) -> UInt64 { (areas + 1) * UInt64(geometry.chunkBytes) }

    static func time(_ cow: any BlockDevice, geometry: ChunkGeometry, areas: UInt64) async throws -> Sample {
        let layout = CowLayout(geometry: geometry)
        return try await IODriver.time(bytes: bytes(areas: areas, geometry: geometry)) {
            let buffer = AlignedBuffer(count: geometry.chunkBytes)
            try await cow.read(into: buffer.mutableBytes, at: 0)
            for area in 0..<areas { try await cow.read(into: buffer.mutableBytes, at: layout.areaOffset(area)) }
        }
    }
}
