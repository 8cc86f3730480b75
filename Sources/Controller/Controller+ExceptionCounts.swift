import VolumeTargets

/// COWs that go back in time: restored from an older copy, a COW lacks the exceptions of the
/// chunks copied since, so its snapshot would show the origin's newer data for them. `close`
/// records each active snapshot's exception count (`recordStamps`); counts only grow while a
/// snapshot lives (a merge, which consumes them, is marked and not judged), so a COW found
/// with fewer went back.
extension Controller {
    /// At activation, once `snapshot` is attached: marks it suspect if its COW holds fewer
    /// exceptions than when it was last let go (its COW went back in time: restored from an
    /// older copy), so chunks copied since would show the origin's newer data.
    func checkExceptionCount(of record: SnapshotRecord, attached snapshot: Snapshot) {
        let status = snapshot.status
        guard let closed = record.closedExceptions, !record.merging, record.suspectReason == nil,
              status.condition == .active || status.condition == .overflow, status.exceptions < closed else { return }
        let reason = Self.cowWentBack(record, holding: status.exceptions, closed: closed)
        try? editRegistry { registry in
            registry.updateSnapshot(named: record.name) { snapshot in
                snapshot.suspectReason = reason
                snapshot.closedExceptions = status.exceptions
            }
        }
        events.record("\(record.name): COW WENT BACK IN TIME (\(reason))", alarm: true)
    }

    /// Why snapshot `record`, whose COW holds `count` exceptions where it held `closed` when
    /// last let go, is suspect.
    static func cowWentBack(_ record: SnapshotRecord, holding count: Int, closed: Int) -> String {
        "its COW \(record.cowPath) holds \(count) exceptions, \(closed) when snapvol last let it go "
            + "(restored from an older copy, or changed outside snapvol): chunks copied since may show newer data"
    }
}
