import AsyncPrimitives
import BlockDevices
import ExceptionMachinery

/// Where one chunk of a snapshot write goes.
enum SnapshotRoute {
    /// The chunk has a completed exception at this store chunk.
    case store(ChunkIndex)
    /// The chunk's exception is pending: wait for it, then route again.
    case wait(PendingException)
    /// This write created the chunk's exception.
    case create(PendingException)
    /// The chunk's exception may be in a metadata area not in memory: resolve, then route again.
    case resolve
}

extension Origin {
    /// Writes a snapshot: chunks with an exception are written in the COW store; a chunk
    /// without one gets one first (its origin data copied, unless the write covers it all).
    func writeSnapshot(_ snapshot: Snapshot, _ buffer: UnsafeRawBufferPointer, at offset: UInt64) async throws {
        try snapshot.checkRange(offset: offset, length: UInt64(buffer.count))
        await enterGate()
        defer { leaveGate() }
        let geometry = snapshot.geometry
        var resolved: ExceptionCache.Resolution?
        try await geometry.forEachPiece(offset: offset, length: buffer.count) { piece in
            let source = piece.bytes(of: buffer)
            switch try routeWrite(snapshot, chunk: piece.chunk, resolved: resolved) {
            case .wait(let pending):
                _ = await pending.wait()
                return .retry
            case .store(let new):
                try await snapshot.store.device.write(source, at: piece.offset(at: new, in: geometry))
            case .create(let pending) where piece.coversWholeChunk(of: geometry):
                try await fillNewChunk(snapshot, pending, with: source)
            case .create(let pending):
                var job = CopyJob(geometry: geometry, chunk: piece.chunk)
                job.add(snapshot, pending)
                await runCopy(job)
                return .retry
            case .resolve:
                resolved = try await resolve(snapshot, piece.chunk)
                return .retry
            }
            return .done
        }
    }

    /// A whole-chunk snapshot write to a new exception: the written data is the chunk's content,
    /// so the origin read is skipped (the kernel's measured win for 4 KiB chunks).
    private func fillNewChunk(_ snapshot: Snapshot, _ pending: PendingException, with source: UnsafeRawBufferPointer) async throws {
        var copyError: (any Error)?
        do {
            try await snapshot.store.device.write(source, at: snapshot.geometry.offset(of: pending.new))
        } catch {
            copyError = error
        }
        await finish(snapshot, pending, copyError: copyError)
        if let copyError { throw copyError }
        if !(await pending.wait()) { throw readableError(snapshot) }
    }

    private func routeWrite(_ snapshot: Snapshot, chunk: ChunkIndex, resolved: ExceptionCache.Resolution?) throws -> SnapshotRoute {
        let routed = try state.withLock { state in
            try state.tables.withTables(ObjectIdentifier(snapshot)) { tables -> (SnapshotRoute, Bool) in
                try Self.requireUsable(tables.condition, snapshot)
                if tables.condition == .overflow { throw VolumeError.overflow(volume: snapshot.name) }
                switch tables.exceptions.lookup(chunk, resolved: resolved) {
                case .completed(let new): return (.store(new), false)
                case .pending(let pending): return (.wait(pending), false)
                case .unloaded: return (.resolve, false)
                case .absent: break
                }
                do {
                    return (.create(try tables.exceptions.begin(chunk, in: snapshot.store)), false)
                } catch StoreError.full {
                    tables.condition = .overflow
                    return (.wait(PendingException(old: chunk, new: 0)), true)
                }
            }
        }
        guard let (route, overflowed) = routed else { throw VolumeError.inactive(volume: snapshot.name) }
        if overflowed {
            onEvent(.snapshotOverflowed(snapshot: snapshot.name))
            throw VolumeError.overflow(volume: snapshot.name)
        }
        return route
    }

    static func requireUsable(_ condition: SnapshotCondition, _ snapshot: Snapshot) throws(VolumeError) {
        switch condition {
        case .active, .overflow: return
        case .invalid(let reason): throw VolumeError.invalid(volume: snapshot.name, reason: reason)
        case .merging, .mergeFailed: throw VolumeError.merging(volume: snapshot.name)
        case .inactive: throw VolumeError.inactive(volume: snapshot.name)
        }
    }

    private func readableError(_ snapshot: Snapshot) -> VolumeError {
        let condition = state.withLock { $0.tables[ObjectIdentifier(snapshot)]?.condition }
        if case .invalid(let reason) = condition { return .invalid(volume: snapshot.name, reason: reason) }
        return .inactive(volume: snapshot.name)
    }
}
