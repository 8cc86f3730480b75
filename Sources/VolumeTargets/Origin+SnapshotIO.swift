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

/// Why routing a snapshot read stopped before the last piece.
enum ReadStop {
    case pending(PendingException)
    case unloaded(ChunkIndex)
}

extension Origin {
    /// Reads a snapshot: completed exceptions from the COW store, pending ones after they
    /// complete (the 2003 list's item 1), the rest from the origin as tracked reads (item 4).
    /// Pieces routed to consecutive places of one device are read with one call.
    ///
    /// A read inside one chunk whose exception is not pending takes the origin's lock twice
    /// (admission with routing, then leaving with untracking) and allocates nothing.
    @inline(__always)
    func readSnapshot(_ snapshot: Snapshot, into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) async throws {
        try snapshot.checkRange(offset: offset, length: UInt64(buffer.count))
        var pieces = snapshot.geometry.pieces(offset: offset, length: buffer.count)
        var plan = ReadPlan()
        var stop: ReadStop?
        admission: while true {
            switch try admitRead(snapshot, &pieces, into: &plan) {
            case .admitted(let first):
                stop = first
                break admission
            case .closed(let reopened):
                await reopened.wait()
            }
        }
        do {
            while true {
                try await perform(plan, snapshot, into: buffer)
                guard let reason = stop else { break }
                untrackReads(plan.token)
                plan = ReadPlan()
                var resolved: ExceptionCache.Resolution?
                switch reason {
                case .pending(let pending): _ = await pending.wait()
                case .unloaded(let chunk): resolved = try await resolve(snapshot, chunk)
                }
                stop = try state.withLock { state throws(VolumeError) in
                    try Self.routeReads(&state, snapshot, &pieces, resolved: resolved, into: &plan)
                }
            }
        } catch {
            leaveGate(untracking: plan.token)
            throw error
        }
        leaveGate(untracking: plan.token)
    }

    /// The outcome of trying to admit a snapshot read.
    private enum ReadAdmission {
        /// Inside the gate, with the first pieces routed (up to the stop, if any).
        case admitted(ReadStop?)
        /// The gate is closed: wait for the event, then try again.
        case closed(OneShotEvent<Void>)
    }

    /// Under one lock acquisition: enters the gate and routes the first pieces into `plan` (a
    /// refused route leaves the gate again before throwing).
    private func admitRead(_ snapshot: Snapshot, _ pieces: inout ChunkPieces,
                           into plan: inout ReadPlan) throws(VolumeError) -> ReadAdmission {
        try state.withLock { state throws(VolumeError) in
            if let reopened = state.gate.enter() { return .closed(reopened) }
            do throws(VolumeError) {
                return .admitted(try Self.routeReads(&state, snapshot, &pieces, resolved: nil, into: &plan))
            } catch {
                state.gate.leave()
                throw error
            }
        }
    }

    /// Under the lock: routes pieces from the cursor into `plan` until one whose exception is
    /// pending or not in memory (left at the cursor and returned), and tracks the plan's origin
    /// reads.
    private static func routeReads(_ state: inout OriginState, _ snapshot: Snapshot, _ pieces: inout ChunkPieces,
                                   resolved: ExceptionCache.Resolution?, into plan: inout ReadPlan) throws(VolumeError) -> ReadStop? {
        let geometry = snapshot.geometry
        let stop: ReadStop?? = try state.tables.withTables(ObjectIdentifier(snapshot)) { tables throws(VolumeError) in
            try requireUsable(tables.condition, snapshot)
            while let piece = pieces.current {
                switch tables.exceptions.lookup(piece.chunk, resolved: resolved) {
                case .pending(let pending): return .pending(pending)
                case .unloaded: return .unloaded(piece.chunk)
                case .completed(let new): plan.add(piece, from: .store, at: piece.offset(at: new, in: geometry))
                case .absent: plan.add(piece, from: .origin, at: piece.offset(at: piece.chunk, in: geometry))
                }
                pieces.advance(past: piece)
            }
            return nil
        }
        guard let stop else { throw VolumeError.inactive(volume: snapshot.name) }
        plan.track(in: &state.reads)
        return stop
    }

    /// Issues a plan's reads.
    @inline(__always)
    private func perform(_ plan: ReadPlan, _ snapshot: Snapshot, into buffer: UnsafeMutableRawBufferPointer) async throws {
        for extent in plan.extents {
            let target = UnsafeMutableRawBufferPointer(rebasing: buffer[extent.bufferOffset..<extent.bufferOffset + extent.length])
            let source = extent.source == .store ? snapshot.store.device : device
            if try !source.readImmediately(into: target, at: extent.deviceOffset) {
                try await source.read(into: target, at: extent.deviceOffset)
            }
        }
    }

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

    private static func requireUsable(_ condition: SnapshotCondition, _ snapshot: Snapshot) throws(VolumeError) {
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
