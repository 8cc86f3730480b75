import AsyncPrimitives
import BlockDevices
import ExceptionMachinery

/// Why routing a snapshot read stopped before the last piece.
enum ReadStop {
    case pending(PendingException)
    case unloaded(ChunkIndex)
}

/// Where one piece of a snapshot read goes.
enum ReadRoute {
    /// To this offset of the COW store or of the origin.
    case device(ReadPlan.Source, UInt64)
    /// Nowhere yet: the exception is pending or not in memory.
    case stop(ReadStop)
}

extension Origin {
    /// Starts reading a snapshot, and finishes the common read: one inside one chunk whose
    /// exception is completed or absent, on a device that answers without suspending (a file or
    /// a block device). Such a read takes the origin's lock twice (admission with routing, then
    /// leaving with untracking), allocates nothing and skips the read plan (`readInsideOneChunk`).
    /// Anything else is left, with nothing held but what the progress says, to
    /// `finishSnapshotRead`.
    ///
    /// It is synchronous so that the caller's only `await` is on the branch that needs one.
    /// After an `await`, a nonisolated function hops back to the generic executor (a
    /// `swift_task_switch`); when this was an async function inlined into `Snapshot.read`, the
    /// common read took that hop too, though it awaited nothing. A session-22 scratch loop
    /// against a device answering without I/O measured the engine's cost per read at 85-92 ns
    /// before and 48-58 ns after, with the next change (`readImmediately`, whose branches
    /// borrow their devices). Session 11 did the same for the general path's frame.
    @inline(__always)
    func startSnapshotRead(_ snapshot: Snapshot, into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> SnapshotReadProgress {
        try snapshot.checkRange(offset: offset, length: UInt64(buffer.count))
        return try readInsideOneChunk(snapshot, into: buffer, at: offset)
    }

    /// Finishes a snapshot read `startSnapshotRead` did not: completed exceptions from the COW
    /// store, pending ones after they complete (the 2003 list's item 1), the rest from the
    /// origin as tracked reads (item 4). Pieces routed to consecutive places of one device are
    /// read with one call.
    func finishSnapshotRead(_ progress: SnapshotReadProgress, _ snapshot: Snapshot, into buffer: UnsafeMutableRawBufferPointer,
                            at offset: UInt64) async throws {
        switch progress {
        case .done: return
        case .general: try await readSnapshotInPieces(snapshot, into: buffer, at: offset)
        case .suspending(let source, let deviceOffset, let token):
            defer { leaveGate(untracking: token) }
            try await device(source, of: snapshot).read(into: buffer, at: deviceOffset)
        }
    }

    /// Gives up a read `startSnapshotRead` did not finish, releasing what it holds (a
    /// `.suspending` read's admission and tracked origin range), so the caller can start over
    /// with the general path.
    func abandonSnapshotRead(_ progress: SnapshotReadProgress) {
        if case .suspending(_, _, let token) = progress { leaveGate(untracking: token) }
    }

    /// The general path: a read spanning chunks, or one that must wait (a closed gate, a
    /// pending exception, an exception not in memory) or throw.
    private func readSnapshotInPieces(_ snapshot: Snapshot, into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) async throws {
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
                switch route(piece, in: &tables, geometry, resolved: resolved) {
                case .stop(let stop): return stop
                case .device(let source, let deviceOffset): plan.add(piece, from: source, at: deviceOffset)
                }
                pieces.advance(past: piece)
            }
            return nil
        }
        guard let stop else { throw VolumeError.inactive(volume: snapshot.name) }
        plan.track(in: &state.reads)
        return stop
    }

    /// Where one piece of a snapshot read goes (the device and the offset on it), or why it
    /// cannot go anywhere yet.
    static func route(_ piece: ChunkPiece, in tables: inout SnapshotTables, _ geometry: ChunkGeometry,
                              resolved: ExceptionCache.Resolution?) -> ReadRoute {
        switch tables.exceptions.lookup(piece.chunk, resolved: resolved) {
        case .pending(let pending): return .stop(.pending(pending))
        case .unloaded: return .stop(.unloaded(piece.chunk))
        case .completed(let new): return .device(.store, piece.offset(at: new, in: geometry))
        case .absent: return .device(.origin, piece.offset(at: piece.chunk, in: geometry))
        }
    }

    /// Issues a plan's reads.
    @inline(__always)
    private func perform(_ plan: ReadPlan, _ snapshot: Snapshot, into buffer: UnsafeMutableRawBufferPointer) async throws {
        for extent in plan.extents {
            let target = UnsafeMutableRawBufferPointer(rebasing: buffer[extent.bufferOffset..<extent.bufferOffset + extent.length])
            try await read(extent.source, of: snapshot, into: target, at: extent.deviceOffset)
        }
    }

    /// One read from the COW store or the origin; a file's `pread` is called without suspending.
    @inline(__always)
    private func read(_ source: ReadPlan.Source, of snapshot: Snapshot, into target: UnsafeMutableRawBufferPointer,
                      at deviceOffset: UInt64) async throws {
        if try !readImmediately(source, of: snapshot, into: target, at: deviceOffset) {
            try await device(source, of: snapshot).read(into: target, at: deviceOffset)
        }
    }

    /// One read from the COW store or the origin if the device answers without suspending;
    /// each branch borrows its device (a device chosen first would be retained and released).
    @inline(__always)
    private func readImmediately(_ source: ReadPlan.Source, of snapshot: Snapshot, into target: UnsafeMutableRawBufferPointer,
                                 at deviceOffset: UInt64) throws -> Bool {
        switch source {
        case .store: try snapshot.cowDevice.readImmediately(into: target, at: deviceOffset)
        case .origin: try device.readImmediately(into: target, at: deviceOffset)
        }
    }

    /// The device a routed piece is read from.
    @inline(__always)
    private func device(_ source: ReadPlan.Source, of snapshot: Snapshot) -> any BlockDevice {
        source == .store ? snapshot.cowDevice : device
    }

    // MARK: reads inside one chunk

    /// The outcome of admitting a read inside one chunk.
    private enum SingleChunkAdmission {
        /// Inside the gate, routed (and tracked, if it goes to the origin).
        case admitted(ReadPlan.Source, UInt64, ReadTracker.Token?)
        /// Not inside the gate, nothing tracked: the general path takes over.
        case general
    }

    /// How far a snapshot read got without suspending.
    enum SnapshotReadProgress {
        /// Read: the device answered at once (a file's or a block device's `pread`).
        case done
        /// Not started, nothing held: the general path takes over.
        case general
        /// Admitted and routed, but the device reads only by suspending: the caller reads this
        /// offset of this device, then leaves the gate untracking the token.
        case suspending(ReadPlan.Source, UInt64, ReadTracker.Token?)

        var isDone: Bool {
            if case .done = self { true } else { false }
        }
    }

    /// The common read, inside one chunk whose exception is completed or absent, without a read
    /// plan and without suspending: admission, routing and tracking under one lock acquisition,
    /// the device's `pread`, then leaving and untracking under another, as in the general path.
    /// Returns `.general`, having done nothing, when the general path must run instead: the read
    /// spans chunks, the gate is closed, the exception is pending or not in memory, or the
    /// snapshot is not usable (the general path throws).
    @inline(__always)
    private func readInsideOneChunk(_ snapshot: Snapshot, into buffer: UnsafeMutableRawBufferPointer,
                                    at offset: UInt64) throws -> SnapshotReadProgress {
        guard let piece = snapshot.geometry.singlePiece(offset: offset, length: buffer.count),
              case .admitted(let source, let deviceOffset, let token) = admitSingleChunkRead(snapshot, piece) else { return .general }
        let answered: Bool
        do {
            answered = try readImmediately(source, of: snapshot, into: buffer, at: deviceOffset)
        } catch {
            leaveGate(untracking: token)
            throw error
        }
        guard answered else { return .suspending(source, deviceOffset, token) }
        leaveGate(untracking: token)
        return .done
    }

    /// Under one lock acquisition: enters the gate, routes `piece` and tracks it if it goes to
    /// the origin; or, if any of that cannot be done here, leaves everything as it was.
    private func admitSingleChunkRead(_ snapshot: Snapshot, _ piece: ChunkPiece) -> SingleChunkAdmission {
        state.withLock { state in
            guard state.gate.enter() == nil else { return .general }
            let routed = state.tables.withTables(ObjectIdentifier(snapshot)) { tables -> ReadRoute? in
                guard tables.condition.readable else { return nil }
                return Self.route(piece, in: &tables, snapshot.geometry, resolved: nil)
            }
            guard case .device(let source, let deviceOffset)? = routed ?? nil else {
                state.gate.leave()
                return .general
            }
            guard source == .origin else { return .admitted(source, deviceOffset, nil) }
            return .admitted(source, deviceOffset, state.reads.track(deviceOffset..<deviceOffset + UInt64(piece.length)))
        }
    }
}
