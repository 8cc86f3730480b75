import BlockDevices
import Synchronization

/// The transient store ("N"): a bump allocator from chunk 0 of the COW device, no metadata.
/// Nothing survives a restart, and it cannot merge.
///
/// Invariant: chunks are handed out once each, in increasing order; commits are immediate
/// (there is nothing to make durable).
public final class TransientExceptionStore: ExceptionStore {
    public let device: any BlockDevice
    public let geometry: ChunkGeometry
    private let state: Mutex<(nextFree: ChunkIndex, valid: Bool)> = Mutex((0, true))

    public init(device: any BlockDevice, geometry: ChunkGeometry) {
        self.device = device
        self.geometry = geometry
    }

    public var isPersistent: Bool { false }
    public var isValid: Bool { state.withLock { $0.valid } }

    public func readMetadata(_ exception: (ChunkIndex, ChunkIndex) throws -> Void) async throws -> MetadataState { .fresh }

    public func prepareException() throws -> ChunkIndex {
        let deviceChunks = geometry.wholeChunks(in: device.size)
        return try state.withLock { state in
            guard state.valid else { throw StoreError.invalidated }
            guard state.nextFree < deviceChunks else { throw StoreError.full }
            defer { state.nextFree += 1 }
            return state.nextFree
        }
    }

    public func commitException(old: ChunkIndex, new: ChunkIndex) async throws {
        guard isValid else { throw StoreError.invalidated }
    }

    public func abandonException(new: ChunkIndex) async { await invalidate() }

    public func prepareMerge(limit: Int) async throws -> [MergeRun] { throw StoreError.unsupported("merge") }

    public func commitMerge(count: Int) async throws { throw StoreError.unsupported("merge") }

    public func usage() -> StoreUsage {
        let next = state.withLock { $0.nextFree }
        return StoreUsage(totalSectors: device.size / UInt64(sectorBytes),
                          allocatedSectors: next * UInt64(geometry.chunkSectors), metadataSectors: 0)
    }

    public func invalidate() async { state.withLock { $0.valid = false } }

    /// No areas: a cache over a transient store is never bounded.
    public var areaLayout: CowLayout? { nil }

    public func readArea(_ area: UInt64) async throws -> [DiskException] {
        throw StoreError.unsupported("reading metadata areas")
    }

    public func readRecords(_ exception: (ChunkIndex, ChunkIndex) throws -> Void) async throws {
        throw StoreError.unsupported("reading records")
    }
}
