import ExceptionMachinery

/// What a snapshot looks like right now, for status displays.
public struct SnapshotStatus: Sendable, Equatable {
    public var name: String
    public var condition: SnapshotCondition
    public var chunkBytes: Int
    public var persistent: Bool
    public var exceptions: Int
    public var pendingExceptions: Int
    public var usage: StoreUsage
    public var io: IOFigures
    /// The in-memory exception table: resident bytes, budget, hit rate; nil when this process
    /// holds no table for the snapshot (it left the origin, or the figures come from disk).
    public var cache: ExceptionCache.Figures?
    /// Origin size in sectors, the length of the dm table line.
    public var sizeSectors: UInt64

    public init(name: String, condition: SnapshotCondition, chunkBytes: Int, persistent: Bool, exceptions: Int,
                pendingExceptions: Int, usage: StoreUsage, io: IOFigures, sizeSectors: UInt64,
                cache: ExceptionCache.Figures? = nil) {
        self.cache = cache
        self.name = name
        self.condition = condition
        self.chunkBytes = chunkBytes
        self.persistent = persistent
        self.exceptions = exceptions
        self.pendingExceptions = pendingExceptions
        self.usage = usage
        self.io = io
        self.sizeSectors = sizeSectors
    }

    /// The line `dmsetup status` prints for this snapshot.
    public var dmStatusLine: String {
        let tail: String
        switch condition {
        case .invalid: tail = "Invalid"
        case .mergeFailed: tail = "Merge failed"
        case .overflow: tail = "Overflow"
        default: tail = usage.dmStatus
        }
        return "0 \(sizeSectors) snapshot \(tail)"
    }
}

/// Origin writes acknowledged in write-back mode and still queued behind their copies.
public struct QueuedWrites: Sendable, Equatable {
    public var writes: Int
    public var bytes: UInt64

    public init(writes: Int = 0, bytes: UInt64 = 0) {
        self.writes = writes
        self.bytes = bytes
    }
}

extension Origin {
    /// Figures of `snapshot`; `inactive` once it left this origin.
    public func status(of snapshot: Snapshot) -> SnapshotStatus {
        let figures = state.withLock { state in
            state.tables.withTables(ObjectIdentifier(snapshot)) { tables in
                (tables.condition, tables.exceptions.completed.count, tables.exceptions.pending.count,
                 tables.exceptions.completed.currentFigures)
            }
        }
        return SnapshotStatus(name: snapshot.name, condition: figures?.0 ?? .inactive,
                              chunkBytes: snapshot.geometry.chunkBytes, persistent: snapshot.store.isPersistent,
                              exceptions: figures?.1 ?? 0, pendingExceptions: figures?.2 ?? 0,
                              usage: snapshot.store.usage(), io: snapshot.counters.snapshot,
                              sizeSectors: size / UInt64(sectorBytes), cache: figures?.3)
    }

    /// Writes acknowledged and still queued behind their copies (always none in write-through mode).
    public var queuedWrites: QueuedWrites { state.withLock { $0.writeBack.figures } }

    /// The snapshots attached to this origin, in the order they joined (merging one included).
    public var snapshots: [Snapshot] { state.withLock { $0.members } }
}

extension Origin {
    /// The origin cut into `cells` equal parts (whole chunks: part `i` starts at chunk
    /// `i * chunks / cells`, rounded up), each with the share of its chunks copied into
    /// `snapshot` (0...1): the picture the TUI's chunk map draws, and `io map --cells` prints.
    public func chunkMap(of snapshot: Snapshot, cells: Int) -> [ChunkMapCell] {
        let geometry = snapshot.geometry
        let count = max(cells, 1)
        let perCell = Double(max(geometry.chunksCovering(size), 1)) / Double(count)
        let firstChunk = { (cell: Int) in UInt64((Double(cell) * perCell).rounded(.up)) }
        let runs = state.withLock { $0.tables[ObjectIdentifier(snapshot)]?.exceptions.completed.table.runs } ?? []
        var copied = [Double](repeating: 0, count: count)
        for run in runs {
            var chunk = run.old
            let end = run.old + UInt64(run.length)
            while chunk < end {
                let cell = min(Int(Double(chunk) / perCell), count - 1)
                let step = max(min(end, firstChunk(cell + 1)), chunk + 1) - chunk
                copied[cell] += Double(step)
                chunk += step
            }
        }
        let bytes = { (cell: Int) in min(self.size, firstChunk(cell) * UInt64(geometry.chunkBytes)) }
        return copied.indices.map { ChunkMapCell(range: bytes($0)..<bytes($0 + 1), held: min(1, copied[$0] / perCell)) }
    }
}

/// One part of a chunk map: the origin's bytes it covers, and the share of its chunks a
/// snapshot holds (0...1).
public struct ChunkMapCell: Sendable, Equatable {
    public let range: Range<UInt64>
    public let held: Double
}

extension Origin {
    /// Size, hit rate and metadata reads of `snapshot`'s exception cache.
    public func cacheFigures(of snapshot: Snapshot) -> ExceptionCache.Figures {
        state.withLock { $0.tables[ObjectIdentifier(snapshot)]?.exceptions.completed.currentFigures } ?? ExceptionCache.Figures()
    }
}
