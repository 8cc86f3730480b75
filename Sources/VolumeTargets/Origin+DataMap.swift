import BlockDevices
import ExceptionMachinery

extension Origin {
    /// Chunks a snapshot's data map routes under one lock acquisition at most: the lookups
    /// hold the origin's lock (at the 76 ns a lookup measured in a randomly written table,
    /// 8,192 take about 0.6 ms), so a longer range gets a map of its prefix and the client
    /// asks again.
    static let dataMapChunks = 8192

    /// The origin's data map: the device's holes, once the queued writes overlapping the range
    /// (acknowledged, maybe not on the device yet) are there. While a merge runs, all data.
    public func dataMap(offset: UInt64, length: UInt64) async throws -> DataMap {
        try checkRange(offset: offset, length: length)
        let range = offset..<offset + length
        let (merging, queued) = await enterGate { ($0.merge != nil, $0.writeBack.blockers(of: range)) }
        defer { leaveGate() }
        for write in queued { await write.wait() }
        if merging { return .allData(range.lowerBound, range.upperBound) }
        return DataMap(start: range.lowerBound, end: range.upperBound, data: try device.dataExtents(in: range))
    }

    /// A snapshot's data map: chunks held in its COW store (or being copied there) are data,
    /// the others are the origin's holes and data. No origin chunk is tracked: an origin write
    /// landing meanwhile first copies the chunk into the snapshot, holes as zeros, so a hole
    /// seen before it stays true of the snapshot, and data seen after it is always true.
    func snapshotDataMap(_ snapshot: Snapshot, offset: UInt64, length: UInt64) async throws -> DataMap {
        try snapshot.checkRange(offset: offset, length: length)
        let geometry = snapshot.geometry
        let firstChunkStart = geometry.offset(of: geometry.chunk(containing: offset))
        let end = min(offset + length, firstChunkStart + UInt64(Self.dataMapChunks * geometry.chunkBytes))
        let merging = await enterGate()
        defer { leaveGate() }
        if merging { return .allData(offset, end) }
        let (held, onOrigin) = try routeDataMap(snapshot, offset..<end)
        var data = held
        for range in onOrigin { data += try device.dataExtents(in: range) }
        return DataMap(start: offset, end: end, data: data)
    }

    /// Under the lock: the parts of `range` the snapshot holds itself (or whose exception is not
    /// in memory: data, to be safe), and the parts it reads from the origin, both merged.
    private func routeDataMap(_ snapshot: Snapshot, _ range: Range<UInt64>) throws -> (held: [Range<UInt64>], onOrigin: [Range<UInt64>]) {
        let geometry = snapshot.geometry
        return try state.withLock { state throws(VolumeError) in
            let routed = try state.tables.withTables(ObjectIdentifier(snapshot)) { tables throws(VolumeError) in
                try Self.requireUsable(tables.condition, snapshot)
                var held: [Range<UInt64>] = [], onOrigin: [Range<UInt64>] = []
                for piece in geometry.pieces(offset: range.lowerBound, length: Int(range.count)) {
                    let start = piece.offset(at: piece.chunk, in: geometry)
                    let pieceRange = start..<start + UInt64(piece.length)
                    if case .device(.origin, _) = Self.route(piece, in: &tables, geometry, resolved: nil) {
                        Self.append(pieceRange, to: &onOrigin)
                    } else {
                        Self.append(pieceRange, to: &held)
                    }
                }
                return (held, onOrigin)
            }
            guard let routed else { throw VolumeError.inactive(volume: snapshot.name) }
            return routed
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

extension Snapshot {
    public func dataMap(offset: UInt64, length: UInt64) async throws -> DataMap {
        try await origin.snapshotDataMap(self, offset: offset, length: length)
    }
}
