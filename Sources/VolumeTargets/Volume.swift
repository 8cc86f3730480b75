import BlockDevices

/// Anything exported as a block volume: an origin or a snapshot (later a remap volume).
///
/// Invariant: `read` and `write` either transfer the whole range or throw; accesses past
/// `size` throw `VolumeError.outOfRange`.
public protocol Volume: AnyObject, Sendable {
    var name: String { get }
    var size: UInt64 { get }
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) async throws
    func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) async throws
    /// Reads like `read` if the volume can without suspending and returns true; returns false,
    /// having done nothing and holding nothing, otherwise (the caller then calls `read`). Lets a
    /// front end serve the common read inline, with no task of its own.
    func readImmediately(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Bool
    /// Writes like `write` if the volume can without suspending and returns true; returns
    /// false, having done nothing and holding nothing, otherwise (see `readImmediately`).
    func writeImmediately(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws -> Bool
    /// Makes every completed write durable.
    func flush() async throws
    /// Where the data of `length` bytes at `offset` lies: outside the map's ranges the volume
    /// reads as zeros, and a range may be marked where the volume cannot tell (marking is always
    /// true). The map may cover only a prefix. Throws like `read` outside the volume.
    func dataMap(offset: UInt64, length: UInt64) async throws -> RangeMap
    /// A hint that `length` bytes at `offset` are no longer needed (TRIM): until written again
    /// they may read as their old contents or as zeros. Returns the bytes given back to the
    /// device (deallocated, reading as zeros). Throws like `write` outside the volume.
    func discard(offset: UInt64, length: UInt64) async throws -> UInt64
    /// Writes zeros over `length` bytes at `offset`; where `mayDeallocate`, parts the volume can
    /// give back to its device are deallocated instead of written. Returns the bytes deallocated.
    @discardableResult
    func writeZeroes(offset: UInt64, length: UInt64, mayDeallocate: Bool) async throws -> UInt64
}

/// The largest write `writeZeroBytes` sends.
let zeroStep = 1 << 20

extension Origin: Volume {}
extension Snapshot: Volume {}

extension Volume {
    /// Never at once: the volume is read by `read` alone.
    public func readImmediately(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Bool { false }

    /// Never at once: the volume is written by `write` alone.
    public func writeImmediately(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws -> Bool { false }

    /// Throws `VolumeError.outOfRange` unless `length` bytes at `offset` lie inside the volume.
    public func checkRange(offset: UInt64, length: UInt64) throws {
        let (end, overflow) = offset.addingReportingOverflow(length)
        if overflow || end > size {
            throw VolumeError.outOfRange(volume: name, offset: offset, length: length, size: size)
        }
    }

    /// Every byte may hold data: true of any volume, for those that cannot tell.
    public func dataMap(offset: UInt64, length: UInt64) async throws -> RangeMap {
        try checkRange(offset: offset, length: length)
        return .whole(offset, offset + length)
    }

    /// Gives nothing back: a volume that cannot tell what its device may drop keeps it all.
    public func discard(offset: UInt64, length: UInt64) async throws -> UInt64 {
        try checkRange(offset: offset, length: length)
        return 0
    }

    /// Writes the zeros, whatever `mayDeallocate` says.
    @discardableResult
    public func writeZeroes(offset: UInt64, length: UInt64, mayDeallocate: Bool) async throws -> UInt64 {
        try checkRange(offset: offset, length: length)
        try await writeZeroBytes(offset..<offset + length)
        return 0
    }

    /// Writes zeros over `range` with ordinary writes, at most `zeroStep` bytes each.
    func writeZeroBytes(_ range: Range<UInt64>) async throws {
        guard !range.isEmpty else { return }
        let zeroes = BufferPool.shared.take(Int(min(UInt64(zeroStep), UInt64(range.count))))
        defer { zeroes.release() }
        zeroes.mutableBytes.initializeMemory(as: UInt8.self, repeating: 0)
        var cursor = range.lowerBound
        while cursor < range.upperBound {
            let count = Int(min(UInt64(zeroes.count), range.upperBound - cursor))
            try await write(UnsafeRawBufferPointer(rebasing: zeroes.bytes[0..<count]), at: cursor)
            cursor += UInt64(count)
        }
    }

    /// Reads `count` bytes into a new array (for commands and tests, not hot paths).
    public func readBytes(at offset: UInt64, count: Int) async throws -> [UInt8] {
        let buffer = AlignedBuffer(count: count)
        try await read(into: buffer.mutableBytes, at: offset)
        return buffer.array
    }

    /// Writes `bytes` (for commands and tests, not hot paths).
    public func writeBytes(_ bytes: [UInt8], at offset: UInt64) async throws {
        let buffer = AlignedBuffer(copying: bytes)
        try await write(buffer.bytes, at: offset)
    }
}
