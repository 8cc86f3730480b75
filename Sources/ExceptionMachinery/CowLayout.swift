/// The on-disk layout of the kernel's persistent snapshot store ("P"): chunk 0 is the header,
/// metadata area `a` is chunk `1 + a * (epa + 1)`, and the `epa` chunks after an area hold the
/// data its records point to. All integers are little-endian. See Docs/COW-FORMAT.md.
public struct CowLayout: Sendable, Hashable {
    public static let magic: UInt32 = 0x7041_6e53
    /// The magic as the header's first four bytes ("SnAp").
    public static let magicBytes: [UInt8] = withUnsafeBytes(of: magic.littleEndian) { Array($0) }
    public static let version: UInt32 = 1
    public static let recordBytes = 16
    /// The smallest COW device the kernel and LVM accept, in chunks.
    public static let minimumChunks: UInt64 = 3

    public let geometry: ChunkGeometry

    public init(geometry: ChunkGeometry) { self.geometry = geometry }

    /// Records per metadata area.
    public var exceptionsPerArea: Int { geometry.chunkBytes / Self.recordBytes }

    var stride: UInt64 { UInt64(exceptionsPerArea) + 1 }

    /// The chunk holding metadata area `area`.
    public func areaLocation(_ area: UInt64) -> ChunkIndex { 1 + area * stride }

    /// The byte offset of metadata area `area` on the COW device.
    public func areaOffset(_ area: UInt64) -> UInt64 { geometry.offset(of: areaLocation(area)) }

    /// Whether `chunk` holds the header or a metadata area (and so can never hold data).
    public func isMetadata(_ chunk: ChunkIndex) -> Bool { chunk == 0 || (chunk - 1) % stride == 0 }

    /// The area whose data region contains data chunk `chunk`.
    public func area(ofData chunk: ChunkIndex) -> UInt64 { (chunk - 1) / stride }

    /// Applies the kernel's skip rule: a free pointer that lands on an area moves past it.
    public func skippingMetadata(_ nextFree: ChunkIndex) -> ChunkIndex {
        nextFree % stride == 1 ? nextFree + 1 : nextFree
    }

    /// The first free chunk of a store with no exceptions.
    public var firstFree: ChunkIndex { 2 }

    /// The COW size (in chunks) that holds every chunk of an origin of `originChunks` chunks (LVM's rule).
    public func chunksToHoldWholeOrigin(_ originChunks: UInt64) -> UInt64 {
        1 + originChunks + (originChunks + UInt64(exceptionsPerArea)) / UInt64(exceptionsPerArea)
    }
}

/// The header in chunk 0 of a persistent COW device.
public struct CowHeader: Sendable, Equatable {
    public var magic: UInt32
    public var valid: UInt32
    public var version: UInt32
    public var chunkSectors: UInt32

    public init(magic: UInt32 = CowLayout.magic, valid: Bool = true, version: UInt32 = CowLayout.version, chunkSectors: UInt32) {
        self.magic = magic
        self.valid = valid ? 1 : 0
        self.version = version
        self.chunkSectors = chunkSectors
    }

    public init(decoding bytes: [UInt8]) {
        magic = LittleEndian.u32(bytes, 0)
        valid = LittleEndian.u32(bytes, 4)
        version = LittleEndian.u32(bytes, 8)
        chunkSectors = LittleEndian.u32(bytes, 12)
    }

    /// The header chunk: the four fields, then zeros up to `chunkBytes`.
    public func encoded(chunkBytes: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: chunkBytes)
        LittleEndian.put(magic, into: &bytes, at: 0)
        LittleEndian.put(valid, into: &bytes, at: 4)
        LittleEndian.put(version, into: &bytes, at: 8)
        LittleEndian.put(chunkSectors, into: &bytes, at: 12)
        return bytes
    }
}

/// One 16-byte exception record as stored in a metadata area.
public struct DiskException: Sendable, Equatable {
    public var old: ChunkIndex
    public var new: ChunkIndex

    public init(old: ChunkIndex, new: ChunkIndex) {
        self.old = old
        self.new = new
    }
}

/// Encoding and decoding of metadata areas.
public enum MetadataArea {
    /// The records of an area up to its terminator (`new == 0`), and whether all slots were used.
    public static func decode(_ bytes: [UInt8]) -> (records: [DiskException], full: Bool) {
        bytes.withUnsafeBytes { raw in
            var records: [DiskException] = []
            let slots = raw.count / CowLayout.recordBytes
            for slot in 0..<slots {
                let base = slot * CowLayout.recordBytes
                let new = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: base + 8, as: UInt64.self))
                if new == 0 { return (records, false) }
                records.append(DiskException(old: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: base, as: UInt64.self)), new: new))
            }
            return (records, true)
        }
    }

    /// An area chunk holding `records` followed by zeros.
    public static func encode(_ records: [DiskException], chunkBytes: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: chunkBytes)
        bytes.withUnsafeMutableBytes { raw in
            for (slot, record) in records.enumerated() {
                raw.storeBytes(of: record.old.littleEndian, toByteOffset: slot * CowLayout.recordBytes, as: UInt64.self)
                raw.storeBytes(of: record.new.littleEndian, toByteOffset: slot * CowLayout.recordBytes + 8, as: UInt64.self)
            }
        }
        return bytes
    }
}

/// Little-endian integer access to byte arrays.
public enum LittleEndian {
    public static func u32(_ bytes: [UInt8], _ at: Int) -> UInt32 {
        (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[at + $1]) << (8 * $1) }
    }

    public static func u64(_ bytes: [UInt8], _ at: Int) -> UInt64 {
        (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[at + $1]) << (8 * $1) }
    }

    public static func put<T: FixedWidthInteger>(_ value: T, into bytes: inout [UInt8], at: Int) {
        for i in 0..<(T.bitWidth / 8) { bytes[at + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
    }
}
