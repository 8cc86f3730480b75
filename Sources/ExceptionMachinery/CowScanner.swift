import BlockDevices

/// What a scan of a persistent COW device found.
public struct CowScan: Sendable {
    public var header: CowHeader
    public var layout: CowLayout
    public var state: MetadataState
    public var exceptionCount = 0
    /// The kernel's `next_free`: the chunk the next exception will use.
    public var nextFree: ChunkIndex
    /// The area that is not full (where the next record goes).
    public var currentArea: UInt64 = 0
    /// The records already in the current area.
    public var currentAreaRecords: [DiskException] = []
    public var areasRead = 0

    /// Space figures as `dmsetup status` reports them for this store.
    public func usage(deviceBytes: UInt64) -> StoreUsage {
        let sectors = UInt64(layout.geometry.chunkSectors)
        return StoreUsage(totalSectors: deviceBytes / UInt64(sectorBytes),
                          allocatedSectors: nextFree * sectors,
                          metadataSectors: (currentArea + 2) * sectors)
    }
}

/// Reads and validates the metadata of a persistent COW device, as the kernel's resume does,
/// refusing anything the kernel would misread. Shared by the store's load and `snapvol check`.
public enum CowScanner {
    /// The kernel's default chunk size (used for a device whose magic is 0 when none is requested).
    public static let defaultChunkBytes = 16 * 1024

    /// Reads the header and derives the layout, without reading any area.
    /// - Parameter requiredChunkBytes: if given, a device whose header names another size is refused.
    public static func readHeader(_ device: any BlockDevice, requiredChunkBytes: Int? = nil) async throws -> (CowHeader, CowLayout) {
        guard device.size >= UInt64(sectorBytes) else {
            throw CowFormatError.tooSmall(device: device.name, bytes: device.size,
                                          chunkBytes: requiredChunkBytes ?? defaultChunkBytes)
        }
        let header = CowHeader(decoding: try await device.readBytes(at: 0, count: sectorBytes))
        let chunkBytes: Int
        switch header.magic {
        case 0:
            chunkBytes = requiredChunkBytes ?? defaultChunkBytes
        case CowLayout.magic:
            guard header.version == CowLayout.version else {
                throw CowFormatError.unsupportedVersion(device: device.name, version: header.version)
            }
            guard header.chunkSectors > 0, header.chunkSectors <= UInt32(ChunkGeometry.largest / sectorBytes),
                  header.chunkSectors & (header.chunkSectors - 1) == 0 else {
                throw CowFormatError.badChunkSize(device: device.name, sectors: header.chunkSectors)
            }
            chunkBytes = Int(header.chunkSectors) * sectorBytes
            if let requiredChunkBytes, requiredChunkBytes != chunkBytes {
                throw CowFormatError.chunkSizeMismatch(device: device.name, onDisk: chunkBytes, requested: requiredChunkBytes)
            }
        default:
            throw CowFormatError.badMagic(device: device.name, found: header.magic)
        }
        let layout = CowLayout(geometry: try ChunkGeometry(chunkBytes: chunkBytes))
        if device.size < CowLayout.minimumChunks * UInt64(chunkBytes) {
            throw CowFormatError.tooSmall(device: device.name, bytes: device.size, chunkBytes: chunkBytes)
        }
        return (header, layout)
    }

    /// Reads every metadata area, validating each record, and reports records in order.
    /// - Parameters:
    ///   - originChunks: if given, records naming an origin chunk at or beyond it are refused.
    ///   - visit: called for each record, in on-disk order.
    public static func scan(_ device: any BlockDevice, requiredChunkBytes: Int? = nil, originChunks: UInt64? = nil,
                            visit: (DiskException) throws -> Void = { _ in }) async throws -> CowScan {
        let (header, layout) = try await readHeader(device, requiredChunkBytes: requiredChunkBytes)
        var scan = CowScan(header: header, layout: layout, state: .fresh, nextFree: layout.firstFree)
        if header.magic == 0 { return scan }
        if header.valid == 0 {
            scan.state = .invalid
            return scan
        }
        var validator = RecordValidator(device: device, layout: layout, originChunks: originChunks)
        let chunkBytes = layout.geometry.chunkBytes
        var area: UInt64 = 0
        var areas = AreaReadAhead(device: device, layout: layout)
        defer { areas.stop() }
        while true {
            let location = layout.areaLocation(area)
            guard (location + 1) * UInt64(chunkBytes) <= device.size else {
                throw CowFormatError.truncated(device: device.name, area: area, chunk: location)
            }
            let (records, full) = MetadataArea.decode(try await areas.read(area))
            scan.areasRead += 1
            for (slot, record) in records.enumerated() {
                try validator.check(record, area: area, slot: slot)
                try visit(record)
                scan.nextFree = max(scan.nextFree, record.new + 1)
            }
            scan.exceptionCount += records.count
            if !full {
                scan.currentArea = area
                scan.currentAreaRecords = records
                break
            }
            area += 1
        }
        scan.state = scan.exceptionCount == 0 ? .fresh : .valid
        scan.nextFree = layout.skippingMetadata(scan.nextFree)
        return scan
    }
}

/// Checks records one by one: inside the device, not on metadata, inside the origin, no repeats.
struct RecordValidator {
    let device: any BlockDevice
    let layout: CowLayout
    let originChunks: UInt64?
    let deviceChunks: UInt64
    var storeChunksSeen: ChunkBitmap
    var originChunksSeen: ChunkBitmap?
    var originChunksSeenSparse: Set<ChunkIndex> = []

    init(device: any BlockDevice, layout: CowLayout, originChunks: UInt64?) {
        self.device = device
        self.layout = layout
        self.originChunks = originChunks
        deviceChunks = layout.geometry.wholeChunks(in: device.size)
        storeChunksSeen = ChunkBitmap(bound: deviceChunks)
        originChunksSeen = originChunks.map { ChunkBitmap(bound: $0) }
    }

    mutating func check(_ record: DiskException, area: UInt64, slot: Int) throws {
        let name = device.name
        guard record.new < deviceChunks else {
            throw CowFormatError.recordPastEnd(device: name, area: area, slot: slot, new: record.new, deviceChunks: deviceChunks)
        }
        guard !layout.isMetadata(record.new) else {
            throw CowFormatError.recordAtMetadata(device: name, area: area, slot: slot, new: record.new)
        }
        guard storeChunksSeen.insert(record.new) else {
            throw CowFormatError.duplicateStore(device: name, area: area, slot: slot, new: record.new)
        }
        if let originChunks {
            guard record.old < originChunks else {
                throw CowFormatError.recordBeyondOrigin(device: name, area: area, slot: slot, old: record.old, originChunks: originChunks)
            }
            guard originChunksSeen!.insert(record.old) else {
                throw CowFormatError.duplicateOrigin(device: name, area: area, slot: slot, old: record.old)
            }
        } else {
            guard originChunksSeenSparse.insert(record.old).inserted else {
                throw CowFormatError.duplicateOrigin(device: name, area: area, slot: slot, old: record.old)
            }
        }
    }
}
