/// An owned, zero-initialised byte buffer whose address is a multiple of `alignment`
/// (suitable for O_DIRECT). It is a class so one allocation can be reused across I/Os.
///
/// Not Sendable: one task owns a buffer at a time.
public final class AlignedBuffer {
    public let count: Int
    private let base: UnsafeMutableRawPointer

    public init(count: Int, alignment: Int = 4096) {
        self.count = count
        let align = max(alignment, MemoryLayout<UInt64>.alignment)
        base = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: align)
        base.initializeMemory(as: UInt8.self, repeating: 0, count: max(count, 1))
    }

    public convenience init(copying bytes: [UInt8], alignment: Int = 4096) {
        self.init(count: bytes.count, alignment: alignment)
        bytes.withUnsafeBytes { source in
            if let address = source.baseAddress { base.copyMemory(from: address, byteCount: count) }
        }
    }

    deinit { base.deallocate() }

    public var mutableBytes: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: base, count: count)
    }

    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    /// The bytes as an array (copies).
    public var array: [UInt8] {
        [UInt8](unsafeUninitializedCapacity: count) { target, initialized in
            if let address = target.baseAddress { address.initialize(from: base.assumingMemoryBound(to: UInt8.self), count: count) }
            initialized = count
        }
    }

    public func copy(into array: inout [UInt8]) {
        array.withUnsafeMutableBytes { UnsafeMutableRawBufferPointer(rebasing: $0[0..<count]).copyMemory(from: bytes) }
    }

    /// Sets every byte to `value`.
    public func fill(_ value: UInt8) {
        base.initializeMemory(as: UInt8.self, repeating: value, count: count)
    }
}
