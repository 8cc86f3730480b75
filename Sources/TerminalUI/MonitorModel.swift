import Controller
import Foundation

/// One line of the main view: an origin, or a snapshot indented under it.
public struct VolumeRow: Sendable, Equatable {
    /// What the row shows (a snapshot row follows its origin's).
    public enum Kind: Sendable { case origin, snapshot, remap }

    public var kind: Kind
    public var name: String
    public var origin: String
    public var size: UInt64
    public var chunkSize: Int?
    public var exceptions: Int?
    public var fillPercent: Double?
    public var pendingCopies: Int?
    public var state: String
    public var reason: String?
    public var readRate: Double
    public var writeRate: Double
    /// A snapshot whose origin or COW was found changed outside snapvol (see `SnapshotReport.suspect`).
    public var suspect = false
}

/// How the main view orders rows (snapshots always stay under their origin).
public enum SortKey: String, CaseIterable, Sendable {
    case name, fill, exceptions, state

    public var next: SortKey { SortKey.allCases[(SortKey.allCases.firstIndex(of: self)! + 1) % SortKey.allCases.count] }
}

/// What the main view shows, as data: rows from the latest status, filtered and sorted, the
/// selection, and I/O rates from the difference of two samples. No curses here.
///
/// Invariants: `selection` indexes `rows` (or is 0 when empty); the selected volume stays
/// selected across refreshes while it exists.
public struct MonitorModel: Sendable {
    public private(set) var rows: [VolumeRow] = []
    public private(set) var selection = 0
    public var filter = "" { didSet { rebuild() } }
    public var sort = SortKey.name { didSet { rebuild() } }
    public private(set) var status: PoolStatus?
    private var previous: (status: PoolStatus, time: Date)?
    private var rates: [String: (read: Double, write: Double)] = [:]

    public init() {}

    public var selected: VolumeRow? { rows.indices.contains(selection) ? rows[selection] : nil }

    /// Takes a new status sample; rates are bytes per second since the previous sample.
    public mutating func update(_ status: PoolStatus, at time: Date = Date()) {
        if let previous, time > previous.time {
            let seconds = time.timeIntervalSince(previous.time)
            rates = [:]
            for (name, io) in Self.counters(status) {
                guard let old = Self.counters(previous.status)[name] else { continue }
                rates[name] = (Double(io.read &- old.read) / seconds, Double(io.write &- old.write) / seconds)
            }
        }
        previous = (status, time)
        self.status = status
        rebuild()
    }

    public mutating func move(by delta: Int) {
        guard !rows.isEmpty else { return }
        selection = min(max(selection + delta, 0), rows.count - 1)
    }

    public mutating func select(named name: String) {
        if let index = rows.firstIndex(where: { $0.name == name }) { selection = index }
    }

    private static func counters(_ status: PoolStatus) -> [String: (read: UInt64, write: UInt64)] {
        var result: [String: (read: UInt64, write: UInt64)] = [:]
        for origin in status.origins {
            result[origin.name] = (origin.readBytes, origin.writeBytes)
            for snapshot in origin.snapshots { result[snapshot.name] = (snapshot.readBytes, snapshot.writeBytes) }
        }
        return result
    }

    private mutating func rebuild() {
        let keep = selected?.name
        rows = []
        for origin in sortedOrigins() {
            let snapshots = sorted(origin.snapshots).map { snapshot in
                VolumeRow(kind: .snapshot, name: snapshot.name, origin: origin.name, size: origin.size,
                          chunkSize: snapshot.chunkSize, exceptions: snapshot.exceptions, fillPercent: snapshot.fillPercent,
                          pendingCopies: snapshot.pendingCopies, state: snapshot.state, reason: snapshot.reason,
                          readRate: rates[snapshot.name]?.read ?? 0, writeRate: rates[snapshot.name]?.write ?? 0,
                          suspect: snapshot.suspect != nil)
            }.filter(matches)
            // An origin's PEND: its writes acknowledged and queued behind their copies.
            let originRow = VolumeRow(kind: .origin, name: origin.name, origin: origin.name, size: origin.size,
                                      pendingCopies: origin.queuedWrites, state: origin.state, reason: origin.reason,
                                      readRate: rates[origin.name]?.read ?? 0, writeRate: rates[origin.name]?.write ?? 0)
            if matches(originRow) || !snapshots.isEmpty {
                rows.append(originRow)
                rows += snapshots
            }
        }
        for remap in (status?.remaps ?? []).sorted(by: { $0.name < $1.name }) {
            let row = VolumeRow(kind: .remap, name: remap.name, origin: remap.name, size: remap.size, chunkSize: remap.chunkSize,
                                exceptions: remap.remapped, fillPercent: remap.fillPercent, pendingCopies: remap.pending,
                                state: remap.state, reason: remap.reason,
                                readRate: 0, writeRate: 0)
            if matches(row) { rows.append(row) }
        }
        selection = keep.flatMap { name in rows.firstIndex { $0.name == name } } ?? min(selection, max(rows.count - 1, 0))
    }

    private func matches(_ row: VolumeRow) -> Bool {
        filter.isEmpty || row.name.localizedCaseInsensitiveContains(filter) || row.state.localizedCaseInsensitiveContains(filter)
    }

    private func sortedOrigins() -> [OriginStatus] {
        (status?.origins ?? []).sorted { $0.name < $1.name }
    }

    private func sorted(_ snapshots: [SnapshotReport]) -> [SnapshotReport] {
        switch sort {
        case .name: return snapshots.sorted { $0.name < $1.name }
        case .fill: return snapshots.sorted { ($0.fillPercent, $0.name) > ($1.fillPercent, $1.name) }
        case .exceptions: return snapshots.sorted { ($0.exceptions, $0.name) > ($1.exceptions, $1.name) }
        case .state: return snapshots.sorted { ($0.state, $0.name) < ($1.state, $1.name) }
        }
    }
}
