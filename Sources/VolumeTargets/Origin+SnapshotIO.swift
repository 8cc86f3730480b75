import BlockDevices
import ExceptionMachinery

/// Where one chunk of a snapshot I/O goes.
enum SnapshotRoute {
    /// The chunk has a completed exception at this store chunk.
    case store(ChunkIndex)
    /// The chunk's exception is pending: wait for it, then route again.
    case wait(PendingException)
    /// The chunk is unchanged: read it from the origin (tracked until the read completes).
    case origin(ChunkKey)
    /// This write created the chunk's exception.
    case create(PendingException)
}

extension Origin {
    /// Reads a snapshot: completed exceptions from the COW store, pending ones after they
    /// complete (the 2003 list's item 1), the rest from the origin as tracked reads (item 4).
    func readSnapshot(_ snapshot: Snapshot, into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) async throws {
        try snapshot.checkRange(offset: offset, length: UInt64(buffer.count))
        await enterGate()
        defer { leaveGate() }
        let geometry = snapshot.store.geometry
        try await geometry.forEachPiece(offset: offset, length: buffer.count) { piece in
            switch try routeRead(snapshot, chunk: piece.chunk) {
            case .wait(let pending):
                _ = await pending.wait()
                return .retry
            case .store(let new):
                try await snapshot.store.device.read(into: piece.bytes(of: buffer), at: piece.offset(at: new, in: geometry))
            case .origin(let key):
                defer { untrackRead(key) }
                try await device.read(into: piece.bytes(of: buffer), at: piece.offset(at: piece.chunk, in: geometry))
            case .create:
                preconditionFailure("reads never create exceptions")
            }
            return .done
        }
    }

    /// Writes a snapshot: chunks with an exception are written in the COW store; a chunk
    /// without one gets one first (its origin data copied, unless the write covers it all).
    func writeSnapshot(_ snapshot: Snapshot, _ buffer: UnsafeRawBufferPointer, at offset: UInt64) async throws {
        try snapshot.checkRange(offset: offset, length: UInt64(buffer.count))
        await enterGate()
        defer { leaveGate() }
        let geometry = snapshot.store.geometry
        try await geometry.forEachPiece(offset: offset, length: buffer.count) { piece in
            let source = piece.bytes(of: buffer)
            switch try routeWrite(snapshot, chunk: piece.chunk) {
            case .wait(let pending):
                _ = await pending.wait()
                return .retry
            case .store(let new):
                try await snapshot.store.device.write(source, at: piece.offset(at: new, in: geometry))
            case .create(let pending) where piece.coversWholeChunk(of: geometry):
                try await fillNewChunk(snapshot, pending, with: source)
            case .create(let pending):
                await runCopy(CopyJob(geometry: geometry, chunk: piece.chunk, targets: [(snapshot, pending)]))
                return .retry
            case .origin:
                preconditionFailure("writes never go to the origin")
            }
            return .done
        }
    }

    /// A whole-chunk snapshot write to a new exception: the written data is the chunk's content,
    /// so the origin read is skipped (the kernel's measured win for 4 KiB chunks).
    private func fillNewChunk(_ snapshot: Snapshot, _ pending: PendingException, with source: UnsafeRawBufferPointer) async throws {
        var copyError: (any Error)?
        do {
            try await snapshot.store.device.write(source, at: snapshot.store.geometry.offset(of: pending.new))
        } catch {
            copyError = error
        }
        await finish(snapshot, pending, copyError: copyError)
        if let copyError { throw copyError }
        if !(await pending.wait()) { throw readableError(snapshot) }
    }

    private func routeRead(_ snapshot: Snapshot, chunk: ChunkIndex) throws -> SnapshotRoute {
        try state.withLock { state in
            guard let tables = state.tables[ObjectIdentifier(snapshot)] else { throw VolumeError.inactive(volume: snapshot.name) }
            try Self.requireUsable(tables.condition, snapshot)
            switch tables.exceptions.lookup(chunk) {
            case .completed(let new): return .store(new)
            case .pending(let pending): return .wait(pending)
            case .absent: break
            }
            let key = ChunkKey(shift: tables.geometry.shift, chunk: chunk)
            state.reads.track(key)
            return .origin(key)
        }
    }

    private func routeWrite(_ snapshot: Snapshot, chunk: ChunkIndex) throws -> SnapshotRoute {
        let (route, overflowed) = try state.withLock { state -> (SnapshotRoute, Bool) in
            let id = ObjectIdentifier(snapshot)
            guard var tables = state.tables[id] else { throw VolumeError.inactive(volume: snapshot.name) }
            try Self.requireUsable(tables.condition, snapshot)
            if tables.condition == .overflow { throw VolumeError.overflow(volume: snapshot.name) }
            switch tables.exceptions.lookup(chunk) {
            case .completed(let new): return (.store(new), false)
            case .pending(let pending): return (.wait(pending), false)
            case .absent: break
            }
            do {
                let pending = try tables.exceptions.begin(chunk, in: snapshot.store)
                state.tables[id] = tables
                return (.create(pending), false)
            } catch StoreError.full {
                tables.condition = .overflow
                state.tables[id] = tables
                return (.wait(PendingException(old: chunk, new: 0)), true)
            }
        }
        if overflowed {
            onEvent(.snapshotOverflowed(snapshot: snapshot.name))
            throw VolumeError.overflow(volume: snapshot.name)
        }
        return route
    }

    private static func requireUsable(_ condition: SnapshotCondition, _ snapshot: Snapshot) throws {
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
