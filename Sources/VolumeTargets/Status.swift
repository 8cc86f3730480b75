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
    /// Origin size in sectors, the length of the dm table line.
    public var sizeSectors: UInt64

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

extension Origin {
    /// Figures of `snapshot`; `inactive` once it left this origin.
    public func status(of snapshot: Snapshot) -> SnapshotStatus {
        let id = ObjectIdentifier(snapshot)
        let tables = state.withLock { $0.tables[id] }
        return SnapshotStatus(name: snapshot.name, condition: tables?.condition ?? .inactive,
                              chunkBytes: snapshot.store.geometry.chunkBytes, persistent: snapshot.store.isPersistent,
                              exceptions: tables?.completed.count ?? 0, pendingExceptions: tables?.pending.count ?? 0,
                              usage: snapshot.store.usage(), io: snapshot.counters.snapshot,
                              sizeSectors: size / UInt64(sectorBytes))
    }

    /// The snapshots attached to this origin, in the order they joined (merging one included).
    public var snapshots: [Snapshot] { state.withLock { $0.members } }
}
