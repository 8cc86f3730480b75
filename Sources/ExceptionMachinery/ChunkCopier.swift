import AsyncPrimitives
import BlockDevices
import Synchronization

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

    /// Reads `length` bytes at `offset` of `source` once and writes them to each destination
    /// concurrently. As soon as one destination's write ends, `written(index, error)` is called
    /// for it (with the source's error for all of them if the read failed), so a slow destination
    /// never delays the others. Returns when every callback has returned.
    public func copy(from source: any BlockDevice, at offset: UInt64, length: Int, to destinations: [CopyDestination],
                     written: @escaping @Sendable (Int, (any Error)?) async -> Void) async {
        await slots.acquire()
        defer { slots.release() }
        let buffer = AlignedBuffer(count: length, alignment: max(source.alignment, 4096))
        do {
            try await source.read(into: buffer.mutableBytes, at: offset)
        } catch {
            let failure = CopySourceError(underlying: error)
            for index in destinations.indices { await written(index, failure) }
            return
        }
        let bytes = SendableBytes(buffer.bytes)
        await withTaskGroup(of: Void.self) { group in
            for (index, destination) in destinations.enumerated() {
                group.addTask {
                    do {
                        try await destination.device.write(bytes.pointer, at: destination.offset)
                        await written(index, nil)
                    } catch {
                        await written(index, error)
                    }
                }
            }
        }
        withExtendedLifetime(buffer) {}
    }

    /// Copies to a single destination and throws its error (the merge's copy back).
    public func copy(from source: any BlockDevice, at offset: UInt64, length: Int, to destination: CopyDestination) async throws {
        let failure = Mutex<(any Error)?>(nil)
        await copy(from: source, at: offset, length: length, to: [destination]) { _, error in
            failure.withLock { $0 = error }
        }
        if let error = failure.withLock({ $0 }) { throw error }
    }
}

/// A read-only view of bytes shared by child tasks that all finish before the owner frees it.
// @unchecked Sendable: the bytes are only read, and `ChunkCopier.write` awaits every child task
// before the owning buffer is released, so no access outlives or races with the owner.
struct SendableBytes: @unchecked Sendable {
    let pointer: UnsafeRawBufferPointer
    init(_ pointer: UnsafeRawBufferPointer) { self.pointer = pointer }
}
