/// Why a persistent COW device was refused. Every case names the device and the place at fault.
public enum CowFormatError: Error, Equatable, CustomStringConvertible {
    case badMagic(device: String, found: UInt32)
    case unsupportedVersion(device: String, version: UInt32)
    case badChunkSize(device: String, sectors: UInt32)
    case chunkSizeMismatch(device: String, onDisk: Int, requested: Int)
    case tooSmall(device: String, bytes: UInt64, chunkBytes: Int)
    case truncated(device: String, area: UInt64, chunk: ChunkIndex)
    case recordPastEnd(device: String, area: UInt64, slot: Int, new: ChunkIndex, deviceChunks: UInt64)
    case recordAtMetadata(device: String, area: UInt64, slot: Int, new: ChunkIndex)
    case recordBeyondOrigin(device: String, area: UInt64, slot: Int, old: ChunkIndex, originChunks: UInt64)
    case duplicateOrigin(device: String, area: UInt64, slot: Int, old: ChunkIndex)
    case duplicateStore(device: String, area: UInt64, slot: Int, new: ChunkIndex)

    public var description: String {
        switch self {
        case let .badMagic(device, found):
            return "\(device): not a snapshot COW device (magic 0x\(String(found, radix: 16)), expected 0x70416e53)"
        case let .unsupportedVersion(device, version):
            return "\(device): unsupported COW format version \(version) (only version 1 exists)"
        case let .badChunkSize(device, sectors):
            return "\(device): invalid chunk size \(sectors) sectors in header (must be a power of two, 1..2097152)"
        case let .chunkSizeMismatch(device, onDisk, requested):
            return "\(device): chunk size on disk is \(ByteCount.describe(UInt64(onDisk))), not the requested \(ByteCount.describe(UInt64(requested)))"
        case let .tooSmall(device, bytes, chunkBytes):
            return "\(device): COW device of \(bytes) bytes is smaller than 3 chunks of \(ByteCount.describe(UInt64(chunkBytes)))"
        case let .truncated(device, area, chunk):
            return "\(device): truncated: metadata area \(area) (chunk \(chunk)) lies past the end of the device"
        case let .recordPastEnd(device, area, slot, new, deviceChunks):
            return "\(device): area \(area) record \(slot) points at chunk \(new), past the end (\(deviceChunks) chunks)"
        case let .recordAtMetadata(device, area, slot, new):
            return "\(device): area \(area) record \(slot) points at chunk \(new), which holds metadata"
        case let .recordBeyondOrigin(device, area, slot, old, originChunks):
            return "\(device): area \(area) record \(slot) names origin chunk \(old), beyond the origin (\(originChunks) chunks)"
        case let .duplicateOrigin(device, area, slot, old):
            return "\(device): area \(area) record \(slot) repeats origin chunk \(old)"
        case let .duplicateStore(device, area, slot, new):
            return "\(device): area \(area) record \(slot) reuses COW chunk \(new)"
        }
    }
}
