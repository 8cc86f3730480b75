import Synchronization

/// A device held in memory, for unit tests and transient scratch space.
///
/// Invariant: every read observes all writes that completed before it; `flush` is a no-op
/// because memory has no volatile cache to drain.
public final class MemoryBlockDevice: ResizableDevice {
    public let name: String
    public let alignment = 1
    public let isReadOnly = false
    private let storage: Mutex<[UInt8]>

    public init(name: String = "memory", size: Int) {
        self.name = name
        storage = Mutex([UInt8](repeating: 0, count: size))
    }

    public init(name: String = "memory", contents: [UInt8]) {
        self.name = name
        storage = Mutex(contents)
    }

    public var size: UInt64 { UInt64(storage.withLock { $0.count }) }

    /// A copy of the whole device.
    public var contents: [UInt8] { storage.withLock { $0 } }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) async throws {
        _ = try readImmediately(into: buffer, at: offset)
    }

    /// A copy under a lock never suspends: the engine's paths for devices that answer at once
    /// (files and block devices) run on memory too, so the unit tests exercise them.
    public func readImmediately(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Bool {
        try checkRange(offset: offset, length: buffer.count)
        storage.withLock { bytes in
            bytes.withUnsafeBytes { source in
                buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[Int(offset)..<Int(offset) + buffer.count]))
            }
        }
        return true
    }

    public func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) async throws {
        _ = try writeImmediately(buffer, at: offset)
    }

    /// A copy under a lock, like `readImmediately`.
    public func writeImmediately(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws -> Bool {
        try checkRange(offset: offset, length: buffer.count)
        storage.withLock { bytes in
            bytes.withUnsafeMutableBytes { target in
                UnsafeMutableRawBufferPointer(rebasing: target[Int(offset)..<Int(offset) + buffer.count]).copyMemory(from: buffer)
            }
        }
        return true
    }

    public func flush() async throws {}

    /// Zeroes the range: memory has no holes, but reads afterwards are what a hole reads.
    public func deallocate(_ range: Range<UInt64>) async throws -> Bool {
        try checkRange(offset: range.lowerBound, length: range.count)
        storage.withLock { bytes in
            bytes.replaceSubrange(Int(range.lowerBound)..<Int(range.upperBound), with: repeatElement(0, count: range.count))
        }
        return true
    }

    public func resize(to newSize: UInt64) async throws {
        storage.withLock { bytes in
            if Int(newSize) < bytes.count {
                bytes.removeLast(bytes.count - Int(newSize))
            } else {
                bytes.append(contentsOf: repeatElement(0, count: Int(newSize) - bytes.count))
            }
        }
    }
}
