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
/// Invariant: the copies holding a buffer at any moment hold at most `maxBytesInFlight` bytes
/// (counted in 4 KiB units; a single larger copy runs alone) — the kernel once OOM'd without
/// such a cap; a copy waits for room, it never fails for lack of it.
public final class ChunkCopier: Sendable {
    private static let unit = 4096
    private let room: AsyncSemaphore

    /// - Parameter maxBytesInFlight: memory the copy buffers may hold together (default 16 MiB:
    ///   sixteen 1 MiB runs, or 256 copies of 64 KiB chunks).
    public init(maxBytesInFlight: Int = 16 << 20) {
        room = AsyncSemaphore(limit: max(1, maxBytesInFlight / Self.unit))
    }

    /// Bytes of copy buffers currently held (in 4 KiB units).
    public var bytesInFlight: Int { room.inUse * Self.unit }

    private static func units(_ length: Int) -> Int { (length + unit - 1) / unit }

    /// Reads `length` bytes at `offset` of `source` once and writes them to each destination
    /// concurrently. As soon as one destination's write ends, `written(index, error)` is called
    /// for it (with the source's error for all of them if the read failed), so a slow destination
    /// never delays the others. Returns when every callback has returned.
    ///
    /// The buffer and its room are given back as soon as the last write ends, before the
    /// callbacks finish: a callback may wait for other copies (a store commits in allocation
    /// order), and holding room meanwhile could leave none for the copy it waits for.
    public func copy(from source: any BlockDevice, at offset: UInt64, length: Int, to destinations: [CopyDestination],
                     written: @escaping @Sendable (Int, (any Error)?) async -> Void) async {
        guard !destinations.isEmpty else { return }
        let units = Self.units(length)
        await room.acquire(units)
        let buffer = CopyBuffer(BufferPool.shared.take(length), writers: destinations.count, room: room, units: units)
        do {
            try await source.read(into: buffer.bytes.mutablePointer, at: offset)
        } catch {
            buffer.abandon()
            let failure = CopySourceError(underlying: error)
            for index in destinations.indices { await written(index, failure) }
            return
        }
        // Once for all destinations: whether the chunk is all zeros (see `readsAsZeros`).
        let zeros = Self.isZero(buffer.bytes.pointer)
        if destinations.count == 1 {
            // One snapshot (the usual case): no child task to create and wait for.
            return await write(buffer, zeros: zeros, length: length, to: destinations[0], index: 0, written: written)
        }
        await withTaskGroup(of: Void.self) { group in
            for (index, destination) in destinations.enumerated() {
                group.addTask { await self.write(buffer, zeros: zeros, length: length, to: destination, index: index, written: written) }
            }
        }
    }

    /// Writes the copy (all zeros if `zeros`) to one destination, unless that would change
    /// nothing, gives up its share of the buffer, then reports.
    private func write(_ buffer: CopyBuffer, zeros: Bool, length: Int, to destination: CopyDestination, index: Int,
                       written: @escaping @Sendable (Int, (any Error)?) async -> Void) async {
        var failure: (any Error)?
        do {
            if !(zeros && Self.readsAsZeros(destination, length: length)) {
                try await destination.device.write(buffer.bytes.pointer, at: destination.offset)
                // The commit that follows flushes this copy: let the disk start on it now.
                destination.device.startWriteback(offset: destination.offset, length: length)
            }
        } catch { failure = error }
        buffer.writerDone()
        await written(index, failure)
    }

    /// Whether `length` bytes at `destination` already read as zeros (a hole of a sparse file,
    /// as a COW file snapvol created is past its last copy): a copy of zeros there would change
    /// nothing and is not written. The first write to the unused space of a sparse VM image
    /// then copies nothing, and the COW file stays sparse. Costs, per copy, a scan that stops at
    /// the first byte that is not zero (`isZero`, once for all destinations) and, for a chunk
    /// of zeros, one `lseek` per destination.
    static func readsAsZeros(_ destination: CopyDestination, length: Int) -> Bool {
        let range = destination.offset..<destination.offset + UInt64(length)
        return (try? destination.device.dataExtents(in: range).isEmpty) ?? false
    }

    /// Whether every byte is zero, eight at a time.
    static func isZero(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let words = bytes.count / 8
        for word in 0..<words where bytes.loadUnaligned(fromByteOffset: word * 8, as: UInt64.self) != 0 { return false }
        return bytes[(words * 8)...].allSatisfy { $0 == 0 }
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

/// The buffer of one copy, shared by the destination writers. The last writer to finish frees
/// it and gives its room in the copier back.
// @unchecked Sendable: `bytes` is written once (the source read) before any writer task exists,
// then only read; the storage goes back to the pool after the last writer is done, and no
// writer touches `bytes` after calling `writerDone`.
final class CopyBuffer: @unchecked Sendable {
    private let writers: Mutex<Int>
    private let room: AsyncSemaphore
    private let units: Int
    private let storage: PooledBuffer
    let bytes: BufferPointers

    init(_ storage: PooledBuffer, writers: Int, room: AsyncSemaphore, units: Int) {
        self.bytes = BufferPointers(mutablePointer: storage.mutableBytes)
        self.storage = storage
        self.writers = Mutex(writers)
        self.room = room
        self.units = units
    }

    func writerDone() {
        let last = writers.withLock { count -> Bool in
            count -= 1
            return count == 0
        }
        if last { release() }
    }

    /// The read failed: nothing will be written.
    func abandon() { release() }

    /// Called exactly once, by the last writer or on abandon.
    private func release() {
        storage.release()
        room.release(units)
    }
}

/// Raw views of a copy buffer's bytes.
struct BufferPointers {
    let mutablePointer: UnsafeMutableRawBufferPointer
    var pointer: UnsafeRawBufferPointer { UnsafeRawBufferPointer(mutablePointer) }
}
