/// A byte-addressed storage device: a regular file, a raw block device, memory, or a wrapper.
///
/// Invariants every implementation keeps:
/// - `read` fills the whole buffer or throws; `write` writes the whole buffer or throws
///   (short transfers are retried internally, never returned).
/// - An access past `size` throws `DeviceError.outOfRange` before touching the medium.
/// - After `flush` returns, every write that completed before it was called is durable.
/// - Offsets, lengths and buffer addresses are multiples of `alignment`.
public protocol BlockDevice: AnyObject, Sendable {
    /// What the device is, for messages: its path for files and block devices.
    var name: String { get }
    /// Current size in bytes.
    var size: UInt64 { get }
    /// Required alignment of offsets, lengths and buffers in bytes (1 unless opened O_DIRECT).
    var alignment: Int { get }
    /// Whether writes are refused.
    var isReadOnly: Bool { get }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) async throws
    /// Reads like `read` if the device can do so without suspending (its reads only ever wait
    /// in the system call) and returns true; returns false, having done nothing, otherwise.
    /// Lets hot paths skip an asynchronous call when the data is one system call away.
    func readImmediately(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Bool
    func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) async throws
    /// Writes like `write` if the device can do so without suspending and returns true;
    /// returns false, having done nothing, otherwise (see `readImmediately`).
    func writeImmediately(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws -> Bool
    func flush() async throws
    /// Asks the device to begin writing `[offset, offset+length)` to the medium now, without
    /// waiting: a hint that a flush will follow, so the next `flush` has less left to do.
    /// Never fails and guarantees nothing; devices without a write cache do nothing.
    func startWriteback(offset: UInt64, length: Int)
    /// Tells the device that `[offset, offset+length)` is durable and not expected to be read
    /// soon, so it may drop the range from its cache: a hint, like `startWriteback`. Never
    /// fails, guarantees nothing, and never loses data (ranges written since are kept).
    func releaseCachedPages(offset: UInt64, length: Int)
    /// Asks the device to start reading `[offset, offset+length)` into its cache, without
    /// waiting, because reads of it follow: a hint that never fails and guarantees nothing.
    func prefetch(offset: UInt64, length: Int)
    /// The parts of `range` that may hold data, in order, disjoint and inside `range`; every
    /// other byte of it reads as zeros (a hole of a sparse file). Reporting a range as data is
    /// always true, so a device that cannot tell reports all of `range`.
    func dataExtents(in range: Range<UInt64>) throws -> [Range<UInt64>]
    /// Deallocates `range`, which then reads as zeros: a hole of a sparse file, or a block
    /// device's range zeroed by discarding it. Returns false, having changed nothing, where the
    /// device cannot do that without writing the zeros itself; the caller writes them then. Like a
    /// write, durable after the next `flush`, and refused on a read-only device.
    func deallocate(_ range: Range<UInt64>) async throws -> Bool
}

/// A device whose size can change (a regular file, memory): used to extend a COW store.
public protocol ResizableDevice: BlockDevice {
    func resize(to newSize: UInt64) async throws
}

extension BlockDevice {
    public func readImmediately(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Bool { false }

    public func writeImmediately(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws -> Bool { false }

    public func startWriteback(offset: UInt64, length: Int) {}

    public func releaseCachedPages(offset: UInt64, length: Int) {}

    public func prefetch(offset: UInt64, length: Int) {}

    public func dataExtents(in range: Range<UInt64>) throws -> [Range<UInt64>] { range.isEmpty ? [] : [range] }

    public func deallocate(_ range: Range<UInt64>) async throws -> Bool { false }

    /// Throws `outOfRange` unless `[offset, offset+length)` lies inside the device.
    public func checkRange(offset: UInt64, length: Int) throws {
        let (end, overflow) = offset.addingReportingOverflow(UInt64(length))
        if overflow || end > size {
            throw DeviceError.outOfRange(device: name, offset: offset, length: UInt64(length), size: size)
        }
    }

    /// Reads `length` bytes at `offset` into a new array (for metadata and tests, not hot paths).
    public func readBytes(at offset: UInt64, count length: Int) async throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: length)
        let buffer = AlignedBuffer(count: length, alignment: alignment)
        try await read(into: buffer.mutableBytes, at: offset)
        buffer.copy(into: &bytes)
        return bytes
    }

    /// Writes `bytes` at `offset` (for metadata and tests, not hot paths).
    public func writeBytes(_ bytes: [UInt8], at offset: UInt64) async throws {
        let buffer = AlignedBuffer(copying: bytes, alignment: alignment)
        try await write(buffer.bytes, at: offset)
    }
}
