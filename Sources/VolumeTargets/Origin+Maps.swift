import BlockDevices
import ExceptionMachinery

extension Origin {
    /// Chunks a snapshot's map routes under one lock acquisition at most: the lookups hold the
    /// origin's lock (at the 76 ns a lookup measured in a randomly written table, 8,192 take
    /// about 0.6 ms), so a longer span gets a map of its prefix and the client asks again.
    static let mapChunks = 8192

    /// The origin's data map: the device's holes, once the queued writes overlapping the span
    /// (acknowledged, maybe not on the device yet) are there. While a merge runs, all data.
    public func dataMap(offset: UInt64, length: UInt64) async throws -> RangeMap {
        try checkRange(offset: offset, length: length)
        let span = offset..<offset + length
        let (merging, queued) = try await enterOwnGate { ($0.merge != nil, $0.writeBack.blockers(of: span)) }
        defer { leaveGate() }
        for write in queued { await write.wait() }
        if merging { return .whole(span.lowerBound, span.upperBound) }
        return RangeMap(start: span.lowerBound, end: span.upperBound, ranges: try device.dataExtents(in: span))
    }

    /// A snapshot's data map: chunks it holds (or is copying) are data, the others are the
    /// origin's holes and data. No origin chunk is tracked: an origin write landing meanwhile
    /// first copies the chunk into the snapshot, holes as zeros, so a hole seen before it stays
    /// true of the snapshot, and data seen after it is always true.
    func snapshotDataMap(_ snapshot: Snapshot, offset: UInt64, length: UInt64) async throws -> RangeMap {
        let span = try mapSpan(snapshot, offset: offset, length: length)
        let merging = await enterGate()
        defer { leaveGate() }
        if merging { return .whole(span.lowerBound, span.upperBound) }
        let (held, onOrigin) = try await routeSpan(snapshot, span)
        var data = held
        for range in onOrigin { data += try device.dataExtents(in: range) }
        return RangeMap(start: span.lowerBound, end: span.upperBound, ranges: data)
    }

    /// The chunks a snapshot holds itself: copied before an origin write changed them, or
    /// written to the snapshot (or being so). The rest it still shares with the origin:
    /// unchanged since the snapshot joined it.
    func snapshotExceptionMap(_ snapshot: Snapshot, offset: UInt64, length: UInt64) async throws -> RangeMap {
        let span = try mapSpan(snapshot, offset: offset, length: length)
        await enterGate()
        defer { leaveGate() }
        return RangeMap(start: span.lowerBound, end: span.upperBound, ranges: try await routeSpan(snapshot, span).held)
    }

    /// The span a snapshot's map covers: `length` bytes at `offset`, cut at `mapChunks` chunks.
    private func mapSpan(_ snapshot: Snapshot, offset: UInt64, length: UInt64) throws -> Range<UInt64> {
        try snapshot.checkRange(offset: offset, length: length)
        return snapshot.geometry.mapSpan(offset: offset, length: length)
    }

    /// The parts of `span` the snapshot holds itself (its exception is completed or pending),
    /// and the parts it reads from the origin, both merged. Routed under the lock as a read
    /// would be; an exception not in memory (a bounded table) is read back from the store's
    /// metadata between two lock acquisitions, as a read does.
    private func routeSpan(_ snapshot: Snapshot, _ span: Range<UInt64>) async throws -> (held: [Range<UInt64>], onOrigin: [Range<UInt64>]) {
        let geometry = snapshot.geometry
        var pieces = geometry.pieces(offset: span.lowerBound, length: Int(span.count))
        var held: [Range<UInt64>] = [], onOrigin: [Range<UInt64>] = []
        var resolved: ExceptionCache.Resolution?
        while true {
            let unloaded = try state.withLock { state throws(VolumeError) -> ChunkIndex?? in
                try state.tables.withTables(ObjectIdentifier(snapshot)) { tables throws(VolumeError) -> ChunkIndex? in
                    try Self.requireUsable(tables.condition, snapshot)
                    while let piece = pieces.current {
                        let start = piece.offset(at: piece.chunk, in: geometry)
                        let pieceRange = start..<start + UInt64(piece.length)
                        switch Self.route(piece, in: &tables, geometry, resolved: resolved) {
                        case .stop(.unloaded(let chunk)): return chunk
                        case .device(.origin, _): Self.append(pieceRange, to: &onOrigin)
                        default: Self.append(pieceRange, to: &held)
                        }
                        pieces.advance(past: piece)
                    }
                    return nil
                }
            }
            guard let unloaded else { throw VolumeError.inactive(volume: snapshot.name) }
            guard let chunk = unloaded else { return (held, onOrigin) }
            resolved = try await resolve(snapshot, chunk)
        }
    }

    /// Appends `range`, joining it to the last range if they touch.
    private static func append(_ range: Range<UInt64>, to ranges: inout [Range<UInt64>]) {
        if let last = ranges.last, last.upperBound == range.lowerBound {
            ranges[ranges.count - 1] = last.lowerBound..<range.upperBound
        } else {
            ranges.append(range)
        }
    }
}

extension ChunkGeometry {
    /// `length` bytes at `offset`, cut after `Origin.mapChunks` chunks: what one map covers
    /// when each chunk is looked up under a lock.
    func mapSpan(offset: UInt64, length: UInt64) -> Range<UInt64> {
        let firstChunkStart = self.offset(of: chunk(containing: offset))
        return offset..<min(offset + length, firstChunkStart + UInt64(Origin.mapChunks * chunkBytes))
    }
}

extension Snapshot {
    public func dataMap(offset: UInt64, length: UInt64) async throws -> RangeMap {
        try await origin.snapshotDataMap(self, offset: offset, length: length)
    }

    /// Which chunks of `length` bytes at `offset` the snapshot holds itself (see
    /// `Origin.snapshotExceptionMap`): what changed on the origin since the snapshot, for an
    /// incremental backup. Covers at most 8,192 chunks per call.
    public func exceptionMap(offset: UInt64, length: UInt64) async throws -> RangeMap {
        try await origin.snapshotExceptionMap(self, offset: offset, length: length)
    }
}
