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
    /// Makes every completed write durable.
    func flush() async throws
    /// Where the data of `length` bytes at `offset` lies: outside the map's ranges the volume
    /// reads as zeros, and a range may be marked where the volume cannot tell (marking is always
    /// true). The map may cover only a prefix. Throws like `read` outside the volume.
    func dataMap(offset: UInt64, length: UInt64) async throws -> RangeMap
}

extension Origin: Volume {}
extension Snapshot: Volume {}

extension Volume {
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
