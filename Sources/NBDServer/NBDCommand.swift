import BlockDevices
import NIOCore
import VolumeTargets

/// Carries out one transmission request on a volume (in the request's task) and returns what
/// its reply carries. A write's payload goes to the volume from the receive buffer itself; a
/// read lands in a pooled buffer and is copied once into the reply.
enum NBDCommand {
    enum Outcome: Sendable {
        /// The reply's payload (a read's data), if any.
        case done(ByteBuffer?)
        /// A block status request's answer: a map per context.
        case maps([(NBDMetaContext, RangeMap)])
        case failed(UInt32)
    }

    static func perform(_ request: NBDRequest, on volume: any Volume, contexts: [NBDMetaContext],
                        allocator: ByteBufferAllocator) async -> Outcome {
        do {
            switch request.type {
            case NBD.cmdRead:
                return .done(try await read(request, from: volume, allocator: allocator))
            case NBD.cmdWrite:
                try await write(request.payload, at: request.offset, to: volume)
            case NBD.cmdWriteZeroes:
                try await volume.writeZeroes(offset: request.offset, length: UInt64(request.length),
                                             mayDeallocate: request.flags & NBD.cmdFlagNoHole == 0)
            case NBD.cmdTrim:
                _ = try await volume.discard(offset: request.offset, length: UInt64(request.length))
            case NBD.cmdFlush:
                try await volume.flush()
                return .done(nil)
            case NBD.cmdBlockStatus:
                return .maps(try await maps(request, of: volume, contexts))
            default:
                return .failed(NBD.errInvalid)
            }
            if request.flags & NBD.cmdFlagFUA != 0 { try await volume.flush() }
            return .done(nil)
        } catch {
            return .failed(errorCode(error))
        }
    }

    /// Carries out a read, or a write without FUA, at once on the caller's thread when the
    /// volume can without suspending (`Volume.readImmediately`, `writeImmediately`: the common
    /// origin and snapshot I/O on files and block devices); nil, having done nothing, otherwise.
    /// The session then needs no task for the request.
    static func performImmediately(_ request: NBDRequest, on volume: any Volume, allocator: ByteBufferAllocator) -> Outcome? {
        do {
            switch request.type {
            case NBD.cmdRead:
                let buffer = BufferPool.shared.take(Int(request.length))
                defer { buffer.release() }
                guard try volume.readImmediately(into: buffer.mutableBytes, at: request.offset) else { return nil }
                return .done(replyData(buffer, allocator))
            case NBD.cmdWrite where request.flags & NBD.cmdFlagFUA == 0:
                let written = try request.payload.withUnsafeReadableBytes { try volume.writeImmediately($0, at: request.offset) }
                return written ? .done(nil) : nil
            default:
                return nil
            }
        } catch {
            return .failed(errorCode(error))
        }
    }

    private static func read(_ request: NBDRequest, from volume: any Volume, allocator: ByteBufferAllocator) async throws -> ByteBuffer {
        try await withPooledBuffer(Int(request.length)) { buffer in
            try await volume.read(into: buffer.mutableBytes, at: request.offset)
            return replyData(buffer, allocator)
        }
    }

    /// A read's data, copied once from the pooled (aligned, for O_DIRECT devices) buffer into
    /// the reply's buffer.
    private static func replyData(_ buffer: PooledBuffer, _ allocator: ByteBufferAllocator) -> ByteBuffer {
        var data = allocator.buffer(capacity: buffer.count)
        data.writeBytes(buffer.bytes)
        return data
    }

    /// Each context's map of the request's range.
    private static func maps(_ request: NBDRequest, of volume: any Volume, _ contexts: [NBDMetaContext]) async throws
        -> [(NBDMetaContext, RangeMap)] {
        var maps: [(NBDMetaContext, RangeMap)] = []
        let length = UInt64(request.length)
        for context in contexts {
            switch (context, volume) {
            case (.allocation, _): maps.append((context, try await volume.dataMap(offset: request.offset, length: length)))
            case (.exceptions, let snapshot as Snapshot):
                maps.append((context, try await snapshot.exceptionMap(offset: request.offset, length: length)))
            case (.exceptions, _): continue
            }
        }
        return maps
    }

    /// Writes `payload` without copying it: its storage is retained while the write runs, and a
    /// ByteBuffer never changes bytes another buffer still references (it copies on write).
    private static func write(_ payload: ByteBuffer, at offset: UInt64, to volume: any Volume) async throws {
        let (bytes, storage) = payload.withUnsafeReadableBytesWithStorageManagement { ($0, $1.retain()) }
        defer { storage.release() }
        try await volume.write(bytes, at: offset)
    }

    /// Lends `body` a pooled buffer of `count` bytes, given back when it returns or throws.
    private static func withPooledBuffer<T>(_ count: Int, _ body: (PooledBuffer) async throws -> T) async throws -> T {
        let buffer = BufferPool.shared.take(count)
        defer { buffer.release() }
        return try await body(buffer)
    }

    /// The NBD error for an engine error.
    static func errorCode(_ error: any Error) -> UInt32 {
        switch error {
        case VolumeError.outOfRange: return NBD.errInvalid
        case VolumeError.overflow: return NBD.errNoSpace
        case let device as DeviceError: return device.errno == .noSpace ? NBD.errNoSpace : NBD.errIO
        default: return NBD.errIO
        }
    }
}
