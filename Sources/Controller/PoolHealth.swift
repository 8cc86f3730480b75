import Foundation

/// What in a pool's status needs an operator, graded as monitoring plugins grade it (Nagios,
/// Icinga, Sensu): a snapshot lost or about to be, or suspect (its origin modified outside
/// snapvol), an origin or remap volume that could not be
/// activated, a COW device or spare area filling up.
///
/// Invariant: `level` is the worst of the findings' levels (`ok` when there are none); the
/// findings are in status order (origins, their snapshots, remap volumes).
public struct PoolHealth: Sendable, Equatable {
    /// Ordered from best to worst; the raw value is the plugin exit status.
    public enum Level: Int32, Comparable, Sendable {
        case ok = 0, warning = 1, critical = 2

        public static func < (left: Level, right: Level) -> Bool { left.rawValue < right.rawValue }

        public var word: String {
            switch self {
            case .ok: return "OK"
            case .warning: return "WARNING"
            case .critical: return "CRITICAL"
            }
        }
    }

    /// One thing to act on: the volume, and what is wrong in one line (no line break and no
    /// `|`, which would end a plugin's text).
    public struct Finding: Sendable, Equatable {
        public let level: Level
        public let volume: String
        public let text: String

        init(level: Level, volume: String, text: String) {
            self.level = level
            self.volume = volume
            self.text = String(text.map { $0.isNewline || $0 == "|" ? " " : $0 })
        }
    }

    /// The fill levels (percent of a COW device or spare area) that warn and that are critical,
    /// and the age (seconds) past which a snapshot warns (nil: none): one forgotten makes every
    /// first write to its origin pay a copy.
    public struct Thresholds: Sendable, Equatable {
        public var warningFill: Double
        public var criticalFill: Double
        public var maximumAge: Double?

        public init(warningFill: Double = 80, criticalFill: Double = 95, maximumAge: Double? = nil) {
            self.warningFill = warningFill
            self.criticalFill = criticalFill
            self.maximumAge = maximumAge
        }
    }

    /// The snapshot states in which it no longer holds its point in time, or cannot be read.
    public static let unusableStates: Set<String> = ["invalid", "overflow", "merge-failed", "inactive"]

    public let findings: [Finding]
    public let thresholds: Thresholds

    public var level: Level { findings.map(\.level).max() ?? .ok }

    /// - Parameter now: the time ages are counted to.
    public init(_ status: PoolStatus, thresholds: Thresholds = Thresholds(), now: Date = Date()) {
        self.thresholds = thresholds
        var findings: [Finding] = []
        for origin in status.origins {
            if origin.state != "active" {
                findings.append(Finding(level: .critical, volume: origin.name, text: "origin \(origin.name) is \(origin.state)\(Self.because(origin.reason))"))
            }
            for snapshot in origin.snapshots { findings += Self.judge(snapshot, thresholds, now: now) }
        }
        for remap in status.remaps {
            if remap.state != "active" {
                findings.append(Finding(level: .critical, volume: remap.name, text: "remap volume \(remap.name) is \(remap.state)\(Self.because(remap.reason))"))
            } else if let level = thresholds.level(ofFill: remap.fillPercent) {
                findings.append(Finding(level: level, volume: remap.name, text: "spare area of \(remap.name) is \(Self.percent(remap.fillPercent)) full"))
            }
        }
        self.findings = findings
    }

    private static func judge(_ snapshot: SnapshotReport, _ thresholds: Thresholds, now: Date) -> [Finding] {
        if unusableStates.contains(snapshot.state) {
            return [Finding(level: .critical, volume: snapshot.name, text: lost(snapshot))]
        }
        var findings: [Finding] = []
        if let suspect = snapshot.suspect {
            findings.append(Finding(level: .critical, volume: snapshot.name, text: "snapshot \(snapshot.name) is suspect: \(suspect)"))
        }
        if let level = thresholds.level(ofFill: snapshot.fillPercent) {
            findings.append(Finding(level: level, volume: snapshot.name, text: "COW of \(snapshot.name) is \(percent(snapshot.fillPercent)) full"))
        }
        if let limit = thresholds.maximumAge, let created = snapshot.createdDate, now.timeIntervalSince(created) > limit {
            let age = Wording.age(now.timeIntervalSince(created))
            findings.append(Finding(level: .warning, volume: snapshot.name,
                                    text: "snapshot \(snapshot.name) is \(age) old: every first write to \(snapshot.origin) still copies into it"))
        }
        return findings
    }

    private static func lost(_ snapshot: SnapshotReport) -> String {
        switch snapshot.state {
        case "overflow": return "snapshot \(snapshot.name) is lost: its COW overflowed\(because(snapshot.reason))"
        case "merge-failed": return "merge of snapshot \(snapshot.name) failed\(because(snapshot.reason))"
        default: return "snapshot \(snapshot.name) is \(snapshot.state)\(because(snapshot.reason))"
        }
    }

    private static func because(_ reason: String?) -> String { reason.map { ": \($0)" } ?? "" }

    static func percent(_ value: Double) -> String { "\(Int(value.rounded(.down)))%" }
}

extension PoolHealth.Thresholds {
    /// The level a fill of `percent` reaches, or nil below the warning.
    public func level(ofFill percent: Double) -> PoolHealth.Level? {
        if percent >= criticalFill { return .critical }
        if percent >= warningFill { return .warning }
        return nil
    }
}
