import AsyncPrimitives
import BlockDevices

/// Bounds of the write-back queue: at most 32 MiB of queued data (each queued write holds a
/// copy of its data) and at most 256 queued writes (lookups scan the queue). A write takes
/// permits for its bytes, in 4 KiB units, but never fewer than a 256th of them all.
enum WriteBackLimit {
    /// The permits, one per 4 KiB of queued data.
    static let permits = (32 << 20) / 4096
    /// Queued writes at most.
    static let queuedWrites = 256
    /// Larger writes are not queued: they wait for their copies, as in write-through.
    static let largestWrite = 1 << 20

    /// The permits a queued write of `bytes` takes.
    static func permits(for bytes: Int) -> Int { max(permits / queuedWrites, (bytes + 4095) / 4096) }
}

/// A queued write's own copy of its data.
/// Invariant: the bytes are copied in before the queued task starts, only read by that task,
/// and go back to the pool when it ends.
struct QueuedWriteData: Sendable {
    let buffer: PooledBuffer

    init(copying source: UnsafeRawBufferPointer) {
        buffer = BufferPool.shared.take(source.count)
        buffer.mutableBytes.copyMemory(from: source)
    }
}

extension Origin {
    /// Write-back for a write that is not direct (`enterGate(writing:)` decided): it is copied,
    /// queued and acknowledged. The queued write preserves its chunks, waits for earlier
    /// overlapping queued writes and for snapshot reads, then reaches the device. Its failure is
    /// reported by the next `flush`.
    func writeBehind(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) async throws {
        let range = offset..<offset + UInt64(buffer.count)
        guard buffer.count <= WriteBackLimit.largestWrite else {
            // Not queued, but never ahead of an acknowledged queued write it overlaps.
            await waitForQueuedWrites(overlapping: range)
            return try await writeThrough(buffer, at: offset)
        }
        await writeBackRoom.acquire(WriteBackLimit.permits(for: buffer.count))
        let data = QueuedWriteData(copying: buffer)
        let id = state.withLock { state -> UInt64 in
            state.gate.extend()
            return state.writeBack.add(range).0
        }
        Task { await self.completeQueuedWrite(id, data, at: offset) }
    }

    private func completeQueuedWrite(_ id: UInt64, _ data: QueuedWriteData, at offset: UInt64) async {
        let bytes = data.buffer.bytes
        let range = offset..<offset + UInt64(bytes.count)
        for blocker in state.withLock({ $0.writeBack.blockers(of: range, before: id) }) { await blocker.wait() }
        var failure: (any Error)?
        do {
            try await writeThrough(bytes, at: offset)
            // Like dm-snapshot's origin write, which goes to the disk once its copies are done:
            // the disk works on it while later copies proceed, instead of at the next flush.
            device.startWriteback(offset: offset, length: bytes.count)
        } catch {
            failure = error
        }
        let done = state.withLock { state -> OneShotEvent<Void>? in
            if let failure, state.writeBack.failure == nil { state.writeBack.failure = failure }
            return state.writeBack.remove(id)
        }
        data.buffer.release()
        done?.signal()
        writeBackRoom.release(WriteBackLimit.permits(for: bytes.count))
        leaveGate()
    }

    /// Under the lock: whether a write of `range` needs nothing first (no copy, no snapshot read
    /// or queued write in its way).
    static func isDirect(_ state: inout OriginState, _ range: Range<UInt64>) -> Bool {
        let length = Int(range.upperBound - range.lowerBound)
        return !state.writeBack.hasEntry(overlapping: range)
            && !needsCopies(&state, offset: range.lowerBound, length: length)
            && !state.reads.isBusy(offset: range.lowerBound, length: length)
    }

    /// Waits until no queued write overlaps `range` (an origin read must see them).
    func waitForQueuedWrites(overlapping range: Range<UInt64>) async {
        guard writeBack else { return }
        for blocker in state.withLock({ $0.writeBack.blockers(of: range) }) { await blocker.wait() }
    }
}
