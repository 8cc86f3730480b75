import ArgumentParser
import Controller
import Foundation

struct StatusCommand: AsyncParsableCommand, ForwardableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show origins and snapshots, as lvs does.")
    @OptionGroup var options: PoolOptions
    @Argument(help: "Only this volume (an origin shows with its snapshots).", completion: VolumeCompletion.volumes) var name: String?
    @Flag(help: "Print the status model as JSON.") var json = false
    @Flag(help: "Print one dmsetup-status line per snapshot.") var dm = false
    @Flag(help: "Print Prometheus metrics (text format, for node_exporter's textfile collector).") var prometheus = false

    func validate() throws {
        guard [json, dm, prometheus].filter({ $0 }).count <= 1 else {
            throw ValidationError("--json, --dm and --prometheus are exclusive: give one")
        }
    }

    func run() async throws {
        try await guarded {
            let status = try await options.withController("snapvol status") { try $0.status(only: name) }
            if json {
                try printJSON(status)
            } else if prometheus {
                CommandEnvironment.current.stdout(Data(PoolMetrics.exposition(of: status).utf8))
            } else if dm {
                let snapshots = status.origins.flatMap(\.snapshots)
                let single = snapshots.count == 1 && snapshots[0].name == name
                for snapshot in snapshots { emit(single ? snapshot.dmStatus : "\(snapshot.name): \(snapshot.dmStatus)") }
            } else {
                emit(StatusTable.render(status))
            }
        }
    }
}

/// The `lvs`-like table.
enum StatusTable {
    static func render(_ status: PoolStatus) -> String {
        var rows = [["NAME", "ORIGIN", "SIZE", "CHUNK", "EXCEPTIONS", "DATA%", "PENDING", "TABLE", "HIT%", "OPEN", "STATE"]]
        for origin in status.origins {
            // An origin's PENDING: its writes acknowledged and queued behind their copies.
            rows.append([origin.name, "", ByteSize.describe(origin.size), "", "", "", origin.queuedWrites.map(String.init) ?? "",
                         "", "", open(origin.clients), state(origin.state, origin.reason)])
            for snapshot in origin.snapshots {
                rows.append(["  " + snapshot.name, origin.name, ByteSize.describe(origin.size),
                             ByteSize.describe(UInt64(snapshot.chunkSize)), "\(snapshot.exceptions)",
                             String(format: "%.2f", snapshot.fillPercent), "\(snapshot.pendingCopies)",
                             snapshot.table.map { ByteSize.describe(UInt64($0.residentBytes)) } ?? "-",
                             snapshot.table.map { String(format: "%.1f", $0.hitRate * 100) } ?? "-",
                             open(snapshot.clients), state(snapshot.state, snapshot.stateNote)])
            }
        }
        for remap in status.remaps {
            rows.append([remap.name, "(remap)", ByteSize.describe(remap.size), ByteSize.describe(UInt64(remap.chunkSize)),
                         "\(remap.remapped)", String(format: "%.2f", remap.fillPercent), "\(remap.pending)", "-", "-",
                         open(remap.clients), state(remap.state, remap.reason)])
        }
        if status.origins.isEmpty && status.remaps.isEmpty { return "no volumes in pool \(status.pool)" }
        return aligned(rows)
    }

    /// STATE: the state, and why when there is a reason ("inactive (...)").
    private static func state(_ state: String, _ reason: String?) -> String { state + (reason.map { " (\($0))" } ?? "") }

    /// OPEN: how many NBD clients have the volume open ("-" when not known).
    private static func open(_ clients: Int?) -> String { clients.map(String.init) ?? "-" }

    private static func aligned(_ rows: [[String]]) -> String {
        let widths = (0..<rows[0].count).map { column in rows.map { $0[column].count }.max()! }
        return rows.map { row in
            row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}
