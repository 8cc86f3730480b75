/// The index of a chunk on a device: chunk N covers bytes `[N * chunkBytes, (N+1) * chunkBytes)`.
public typealias ChunkIndex = UInt64

/// Bytes per sector, the unit of the kernel's on-disk chunk size and of `dmsetup status`.
public let sectorBytes = 512

/// The chunk size of a store and the arithmetic that maps bytes to chunks.
///
/// Invariant: `chunkBytes` is a power of two between 512 bytes and 1 GiB (the kernel's range).
public struct ChunkGeometry: Sendable, Hashable, CustomStringConvertible {
    public static let smallest = 512
    public static let largest = 1 << 30

    public let chunkBytes: Int
    /// log2(chunkBytes).
    public let shift: Int

    public init(chunkBytes: Int) throws(GeometryError) {
        guard chunkBytes > 0, chunkBytes & (chunkBytes - 1) == 0 else { throw .notPowerOfTwo(chunkBytes) }
        guard (Self.smallest...Self.largest).contains(chunkBytes) else { throw .outOfRange(chunkBytes) }
        self.chunkBytes = chunkBytes
        self.shift = chunkBytes.trailingZeroBitCount
    }

    public init(chunkSectors: UInt32) throws(GeometryError) {
        try self.init(chunkBytes: Int(chunkSectors) &* sectorBytes)
    }

    public var chunkSectors: UInt32 { UInt32(chunkBytes / sectorBytes) }

    public func chunk(containing offset: UInt64) -> ChunkIndex { offset >> UInt64(shift) }

    public func offset(of chunk: ChunkIndex) -> UInt64 { chunk << UInt64(shift) }

    /// Number of whole chunks that fit in `bytes`.
    public func wholeChunks(in bytes: UInt64) -> UInt64 { bytes >> UInt64(shift) }

    /// Number of chunks needed to cover `bytes` (the last one possibly partial).
    public func chunksCovering(_ bytes: UInt64) -> UInt64 { (bytes + UInt64(chunkBytes) - 1) >> UInt64(shift) }

    /// The chunks touched by `length` bytes at `offset`.
    public func chunks(offset: UInt64, length: Int) -> ClosedRange<ChunkIndex>? {
        guard length > 0 else { return nil }
        return chunk(containing: offset)...chunk(containing: offset + UInt64(length) - 1)
    }

    /// The only piece of `length` bytes at `offset` when they lie inside one chunk; nil when
    /// they are empty or span chunks.
    public func singlePiece(offset: UInt64, length: Int) -> ChunkPiece? {
        let chunk = chunk(containing: offset)
        let within = Int(offset - self.offset(of: chunk))
        guard length > 0, within + length <= chunkBytes else { return nil }
        return ChunkPiece(chunk: chunk, offsetInChunk: within, length: length, bufferOffset: 0)
    }

    /// Splits `length` bytes at `offset` into pieces that each lie inside one chunk.
    public func pieces(offset: UInt64, length: Int) -> ChunkPieces {
        ChunkPieces(geometry: self, offset: offset, length: length)
    }

    public var description: String { ByteCount.describe(UInt64(chunkBytes)) }
}

/// The part of an I/O that falls inside one chunk.
public struct ChunkPiece: Sendable, Equatable {
    public let chunk: ChunkIndex
    public let offsetInChunk: Int
    public let length: Int
    /// Where the piece starts in the caller's buffer.
    public let bufferOffset: Int

    /// Whether the piece covers its chunk entirely.
    public func coversWholeChunk(of geometry: ChunkGeometry) -> Bool {
        offsetInChunk == 0 && length == geometry.chunkBytes
    }
}

/// The pieces of one I/O, one per chunk it touches, computed as they are visited (nothing is
/// allocated: this runs on every I/O).
///
/// Invariant: `current` is the first piece not yet passed by `advance`; the pieces visited
/// cover the I/O's bytes in order, each inside one chunk.
public struct ChunkPieces: Sequence, IteratorProtocol, Sendable {
    private let geometry: ChunkGeometry
    private let start: UInt64
    private let end: UInt64
    private var position: UInt64

    init(geometry: ChunkGeometry, offset: UInt64, length: Int) {
        self.geometry = geometry
        start = offset
        end = offset + UInt64(Swift.max(length, 0))
        position = offset
    }

    /// The piece at the cursor; nil past the last one.
    public var current: ChunkPiece? {
        guard position < end else { return nil }
        let chunk = geometry.chunk(containing: position)
        let within = Int(position - geometry.offset(of: chunk))
        let length = Int(Swift.min(UInt64(geometry.chunkBytes - within), end - position))
        return ChunkPiece(chunk: chunk, offsetInChunk: within, length: length, bufferOffset: Int(position - start))
    }

    /// Moves the cursor past `piece`, which must be `current`.
    public mutating func advance(past piece: ChunkPiece) {
        position += UInt64(piece.length)
    }

    public mutating func next() -> ChunkPiece? {
        guard let piece = current else { return nil }
        advance(past: piece)
        return piece
    }
}

/// Why a chunk size was refused.
public enum GeometryError: Error, Equatable, CustomStringConvertible {
    case notPowerOfTwo(Int)
    case outOfRange(Int)

    public var description: String {
        switch self {
        case .notPowerOfTwo(let bytes): return "chunk size \(bytes) bytes is not a power of two"
        case .outOfRange(let bytes):
            return "chunk size \(bytes) bytes is outside \(ChunkGeometry.smallest) bytes .. 1 GiB"
        }
    }
}

/// Human-readable byte counts with binary units ("16 KiB", "1.5 GiB").
public enum ByteCount {
    public static func describe(_ bytes: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        if unit == 0 { return "\(bytes) B" }
        if value == value.rounded() { return "\(Int(value)) \(units[unit])" }
        let tenths = Int((value * 10).rounded())
        return "\(tenths / 10).\(tenths % 10) \(units[unit])"
    }
}

/// What to do after handling a piece in `ChunkGeometry.forEachPiece`.
public enum PieceOutcome: Sendable {
    case done
    /// Handle the same piece again (after waiting for something that changed its route).
    case retry
}

extension ChunkGeometry {
    /// Runs `body` for each chunk piece of `length` bytes at `offset`, again while it says `.retry`.
    public func forEachPiece(offset: UInt64, length: Int, _ body: (ChunkPiece) async throws -> PieceOutcome) async rethrows {
        for piece in pieces(offset: offset, length: length) {
            while try await body(piece) == .retry {}
        }
    }
}

extension ChunkPiece {
    /// The part of the caller's buffer this piece covers.
    public func bytes(of buffer: UnsafeMutableRawBufferPointer) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: buffer[bufferOffset..<bufferOffset + length])
    }

    public func bytes(of buffer: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: buffer[bufferOffset..<bufferOffset + length])
    }

    /// The device offset of this piece when its chunk is stored at chunk `location`.
    public func offset(at location: ChunkIndex, in geometry: ChunkGeometry) -> UInt64 {
        geometry.offset(of: location) + UInt64(offsetInChunk)
    }
}
