import AsyncPrimitives
import BlockDevices

/// Where one copy of a chunk goes.
public struct CopyDestination: Sendable {
    public let device: any BlockDevice
    public let offset: UInt64

    public init(device: any BlockDevice, offset: UInt64) {
        self.device = device
        self.offset = offset
    }
}

/// Why a copy failed as a whole.
public struct CopySourceError: Error, CustomStringConvertible {
    public let underlying: any Error
    public var description: String { "reading the chunk to copy failed: \(underlying)" }
}

/// Copies chunks between devices, reading each source range once and writing it to every
/// destination concurrently.
///
/// Invariant: at most `maxInFlight` copies hold a buffer at any moment (the kernel once OOM'd
/// without such a cap); a copy waits for a slot, it never fails for lack of one.
public final class ChunkCopier: Sendable {
    private let slots: AsyncSemaphore

    public init(maxInFlight: Int = 64) { slots = AsyncSemaphore(limit: maxInFlight) }

    /// Copies currently holding a slot.
    public var inFlight: Int { slots.inUse }

    /// Reads `length` bytes at `offset` of `source` once and writes them to each destination.
    /// - Returns: for each destination, the error its write hit, or nil.
    /// - Throws: `CopySourceError` if the source could not be read (nothing was written).
    public func copy(from source: any BlockDevice, at offset: UInt64, length: Int,
                     to destinations: [CopyDestination]) async throws -> [(any Error)?] {
        await slots.acquire()
        defer { slots.release() }
        let buffer = AlignedBuffer(count: length, alignment: max(source.alignment, 4096))
        do {
            try await source.read(into: buffer.mutableBytes, at: offset)
        } catch {
            throw CopySourceError(underlying: error)
        }
        return await Self.write(buffer, to: destinations)
    }

    /// Writes `buffer` to every destination concurrently, collecting each one's error.
    static func write(_ buffer: AlignedBuffer, to destinations: [CopyDestination]) async -> [(any Error)?] {
        if destinations.count == 1 {
            do { try await destinations[0].device.write(buffer.bytes, at: destinations[0].offset); return [nil] } catch { return [error] }
        }
        let bytes = SendableBytes(buffer.bytes)
        return await withTaskGroup(of: (Int, (any Error)?).self) { group in
            for (index, destination) in destinations.enumerated() {
                group.addTask {
                    do { try await destination.device.write(bytes.pointer, at: destination.offset); return (index, nil) }
                    catch { return (index, error) }
                }
            }
            var errors = [(any Error)?](repeating: nil, count: destinations.count)
            for await (index, error) in group { errors[index] = error }
            return errors
        }
    }
}

/// A read-only view of bytes shared by child tasks that all finish before the owner frees it.
// @unchecked Sendable: the bytes are only read, and `ChunkCopier.write` awaits every child task
// before the owning buffer can be released, so no access outlives or races with the owner.
struct SendableBytes: @unchecked Sendable {
    let pointer: UnsafeRawBufferPointer
    init(_ pointer: UnsafeRawBufferPointer) { self.pointer = pointer }
}
