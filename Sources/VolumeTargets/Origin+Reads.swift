import BlockDevices

extension Origin {
    /// Reads the origin. A read sees every write acknowledged before it (queued writes it
    /// overlaps are waited for) and, during a merge, the merged view.
    ///
    /// The common read (gate open, no merge, no queued write in its range, a device that
    /// answers without suspending) is done by `readAtOnce` and returns without an `await`, as a
    /// snapshot read does (see `startSnapshotRead`). When the general path was the only one,
    /// every read took a hop to the generic executor after each of its `await`s. A session-22
    /// scratch loop against a device answering without I/O measured the engine's cost per read
    /// at 163-178 ns (6 task switches per read) before and 27-42 ns after (2 task switches, as
    /// many as a raw read through the same closure).
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) async throws {
        if try readImmediately(into: buffer, at: offset) { return }
        try await readWaiting(into: buffer, at: offset)
        counters.countRead(buffer.count)
    }

    /// The common read (`readAtOnce`), or false when the general path must run.
    public func readImmediately(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Bool {
        try checkRange(offset: offset, length: UInt64(buffer.count))
        guard try readAtOnce(into: buffer, at: offset) else { return false }
        counters.countRead(buffer.count)
        return true
    }

    /// The common read: admitted under one lock acquisition if nothing stands between it and
    /// the device, then read if the device answers without suspending. Returns false, having
    /// done nothing and holding nothing, when the general path must run.
    @inline(__always)
    private func readAtOnce(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Bool {
        let range = offset..<offset + UInt64(buffer.count)
        let admitted = state.withLock { state in
            guard !state.retired, state.merge == nil, !state.writeBack.hasEntry(overlapping: range) else { return false }
            return state.gate.enter() == nil
        }
        guard admitted else { return false }
        defer { leaveGate() }
        return try device.readImmediately(into: buffer, at: offset)
    }

    /// The general path: waits while the gate is closed and for the queued writes the read
    /// overlaps; reads the merged view during a merge; throws once the origin is retired.
    private func readWaiting(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) async throws {
        let range = offset..<offset + UInt64(buffer.count)
        let (merging, queued) = try await enterOwnGate { ($0.merge != nil, $0.writeBack.blockers(of: range)) }
        defer { leaveGate() }
        for write in queued { await write.wait() }
        if merging {
            try await readMergeView(into: buffer, at: offset)
        } else {
            try await device.read(into: buffer, at: offset)
        }
    }
}
