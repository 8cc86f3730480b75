import ArgumentParser
import Controller
import Foundation

extension PoolCommand {
    /// A monitoring plugin (Nagios, Icinga, Sensu, Zabbix's external checks): one line of state
    /// with performance data, then one line per finding; exit 0 OK, 1 WARNING, 2 CRITICAL,
    /// 3 UNKNOWN.
    struct Check: AsyncParsableCommand, ForwardableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check the pool's health for monitoring: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
            discussion: """
                CRITICAL: a snapshot lost (invalid, overflow, merge-failed) or inactive (its COW missing: the \
                origin's next write gives it up), an origin or remap volume inactive, a COW or spare area at \
                --critical-fill. WARNING: at --warning-fill, or a snapshot older than --max-age. Through 'snapvol serve' when it runs (live figures); \
                otherwise read from disk without the pool's lock, so it never stands in a server's way.
                """)
        @OptionGroup var options: PoolOptions
        @Option(help: ArgumentHelp("Warn at this COW or spare fill, in percent.", valueName: "percent")) var warningFill: Double = 80
        @Option(help: ArgumentHelp("Critical at this COW or spare fill, in percent.", valueName: "percent")) var criticalFill: Double = 95
        @Option(help: ArgumentHelp("Warn about snapshots older than this: 90m, 12h, 7d, 2w.", valueName: "age")) var maxAge: String?
        @Flag(help: "Print the findings as JSON (same exit status).") var json = false

        func validate() throws {
            guard (0...100).contains(warningFill), (0...100).contains(criticalFill), warningFill <= criticalFill else {
                throw ValidationError("--warning-fill and --critical-fill are percentages from 0 to 100, the warning at most the critical")
            }
            // A usage error (exit 64, which monitoring reads as UNKNOWN), not a WARNING's 1.
            do {
                _ = try maxAge.map { try age($0, option: "--max-age") }
            } catch {
                throw ValidationError("\(error)")
            }
        }

        func run() async throws {
            let thresholds = PoolHealth.Thresholds(warningFill: warningFill, criticalFill: criticalFill,
                                                   maximumAge: try maxAge.map { try age($0, option: "--max-age") })
            let status: PoolStatus
            do {
                status = try poolStatus()
            } catch {
                if json { try printJSON(HealthReport(unknown: "\(error)")) } else { emit("SNAPVOL UNKNOWN - \(error)") }
                throw ExitCode(3)
            }
            let health = PoolHealth(status, thresholds: thresholds)
            if json {
                try printJSON(HealthReport(health))
            } else {
                emit(PoolHealthText.render(health, status))
            }
            if health.level != .ok { throw ExitCode(health.level.rawValue) }
        }

        /// Live from the server that owns the pool, or from disk without taking its lock.
        private func poolStatus() throws -> PoolStatus {
            try options.owner()?.status() ?? PoolObserver.status(options.location)
        }
    }
}

/// `pool check --json`: the level and each finding; for a pool that cannot be read, level
/// `unknown` and the problem.
struct HealthReport: Encodable {
    struct Finding: Encodable {
        let level: String
        let volume: String
        let text: String
    }

    let level: String
    let findings: [Finding]
    var problem: String?

    init(_ health: PoolHealth) {
        level = health.level.word.lowercased()
        findings = health.findings.map { Finding(level: $0.level.word.lowercased(), volume: $0.volume, text: $0.text) }
    }

    init(unknown problem: String) {
        level = "unknown"
        findings = []
        self.problem = problem
    }
}

/// The plugin's text: `SNAPVOL LEVEL - worst finding; counts | perfdata`, then each finding on
/// its own line.
enum PoolHealthText {
    static func render(_ health: PoolHealth, _ status: PoolStatus) -> String {
        let snapshots = status.origins.flatMap(\.snapshots)
        var summary = [Wording.counted(status.origins.count, "origin"), Wording.counted(snapshots.count, "snapshot")]
        if !status.remaps.isEmpty { summary.append(Wording.counted(status.remaps.count, "remap volume")) }
        var line = "SNAPVOL \(health.level.word) - "
        // Overviews show only this line: the worst finding comes first.
        if let worst = health.findings.first(where: { $0.level == health.level }) {
            let others = health.findings.count - 1
            line += worst.text + (others > 0 ? " (and \(Wording.counted(others, "more problem")))" : "") + "; "
        }
        line += summary.joined(separator: ", ")
        if health.findings.isEmpty, let fullest = snapshots.max(by: { $0.fillPercent < $1.fillPercent }) {
            line += "; fullest COW: \(fullest.name) \(Int(fullest.fillPercent.rounded(.down)))%"
        }
        let lines = [line + " | " + perfdata(health, status)] + health.findings.map { "\($0.level.word): \($0.text)" }
        return lines.joined(separator: "\n")
    }

    /// One fill gauge per snapshot and remap volume, with the thresholds, and the count of
    /// unusable snapshots.
    static func perfdata(_ health: PoolHealth, _ status: PoolStatus) -> String {
        let limits = "\(number(health.thresholds.warningFill));\(number(health.thresholds.criticalFill));0;100"
        let snapshots = status.origins.flatMap(\.snapshots)
        let unusable = snapshots.filter { PoolHealth.unusableStates.contains($0.state) }.count
        let fills = snapshots.map { "'\($0.name)'=\(number($0.fillPercent))%;\(limits)" }
            + status.remaps.map { "'\($0.name)'=\(number($0.fillPercent))%;\(limits)" }
        return (["unusable_snapshots=\(unusable);;1;0"] + fills).joined(separator: " ")
    }

    private static func number(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(format: "%.2f", value)
    }
}
