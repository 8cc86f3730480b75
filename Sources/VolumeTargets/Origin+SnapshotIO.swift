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

/// Why routing a snapshot read stopped before the last piece.
enum ReadStop {
    case pending(PendingException)
    case unloaded(ChunkIndex)
}

extension Origin {
    /// Reads a snapshot: completed exceptions from the COW store, pending ones after they
    /// complete (the 2003 list's item 1), the rest from the origin as tracked reads (item 4).
    /// Pieces routed to consecutive places of one device are read with one call.
    func readSnapshot(_ snapshot: Snapshot, into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) async throws {
        try snapshot.checkRange(offset: offset, length: UInt64(buffer.count))
        await enterGate()
        defer { leaveGate() }
        let pieces = snapshot.store.geometry.pieces(offset: offset, length: buffer.count)
        var next = 0
        var resolved: ExceptionCache.Resolution?
        while next < pieces.count {
            let (plan, stop) = try routeReads(snapshot, pieces[next...], resolved: resolved)
            try await perform(plan, snapshot, into: buffer)
            next += plan.pieces
            switch stop {
            case .pending(let pending): _ = await pending.wait()
            case .unloaded(let chunk): resolved = try await resolve(snapshot, chunk)
            case nil: break
            }
        }
    }

    /// Under one lock acquisition: routes pieces until one whose exception is pending.
    private func routeReads(_ snapshot: Snapshot, _ pieces: ArraySlice<ChunkPiece>,
                            resolved: ExceptionCache.Resolution?) throws -> (ReadPlan, ReadStop?) {
        let geometry = snapshot.store.geometry
        let id = ObjectIdentifier(snapshot)
        return try state.withLock { state in
            guard let condition = state.tables[id]?.condition else { throw VolumeError.inactive(volume: snapshot.name) }
            try Self.requireUsable(condition, snapshot)
            var plan = ReadPlan()
            for piece in pieces {
                switch state.tables[id]!.exceptions.lookup(piece.chunk, resolved: resolved) {
                case .pending(let pending): return (plan, .pending(pending))
                case .unloaded: return (plan, .unloaded(piece.chunk))
                case .completed(let new): plan.add(piece, from: .store, at: piece.offset(at: new, in: geometry))
                case .absent:
                    let key = ChunkKey(shift: geometry.shift, chunk: piece.chunk)
                    state.reads.track(key)
                    plan.tracked.append(key)
                    plan.add(piece, from: .origin, at: piece.offset(at: piece.chunk, in: geometry))
                }
            }
            return (plan, nil)
        }
    }

    /// Issues a plan's reads; its tracked origin reads end even if one fails.
    private func perform(_ plan: ReadPlan, _ snapshot: Snapshot, into buffer: UnsafeMutableRawBufferPointer) async throws {
        defer { if !plan.tracked.isEmpty { untrackReads(plan.tracked) } }
        for extent in plan.extents {
            let target = UnsafeMutableRawBufferPointer(rebasing: buffer[extent.bufferOffset..<extent.bufferOffset + extent.length])
            let source = extent.source == .store ? snapshot.store.device : device
            try await source.read(into: target, at: extent.deviceOffset)
        }
    }

    /// Writes a snapshot: chunks with an exception are written in the COW store; a chunk
    /// without one gets one first (its origin data copied, unless the write covers it all).
    func writeSnapshot(_ snapshot: Snapshot, _ buffer: UnsafeRawBufferPointer, at offset: UInt64) async throws {
        try snapshot.checkRange(offset: offset, length: UInt64(buffer.count))
        await enterGate()
        defer { leaveGate() }
        let geometry = snapshot.store.geometry
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
                await runCopy(CopyJob(geometry: geometry, chunk: piece.chunk, targets: [(snapshot, pending)]))
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
            try await snapshot.store.device.write(source, at: snapshot.store.geometry.offset(of: pending.new))
        } catch {
            copyError = error
        }
        await finish(snapshot, pending, copyError: copyError)
        if let copyError { throw copyError }
        if !(await pending.wait()) { throw readableError(snapshot) }
    }

    private func routeWrite(_ snapshot: Snapshot, chunk: ChunkIndex, resolved: ExceptionCache.Resolution?) throws -> SnapshotRoute {
        let (route, overflowed) = try state.withLock { state -> (SnapshotRoute, Bool) in
            let id = ObjectIdentifier(snapshot)
            guard let condition = state.tables[id]?.condition else { throw VolumeError.inactive(volume: snapshot.name) }
            try Self.requireUsable(condition, snapshot)
            if condition == .overflow { throw VolumeError.overflow(volume: snapshot.name) }
            switch state.tables[id]!.exceptions.lookup(chunk, resolved: resolved) {
            case .completed(let new): return (.store(new), false)
            case .pending(let pending): return (.wait(pending), false)
            case .unloaded: return (.resolve, false)
            case .absent: break
            }
            do {
                return (.create(try state.tables[id]!.exceptions.begin(chunk, in: snapshot.store)), false)
            } catch StoreError.full {
                state.tables[id]!.condition = .overflow
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
