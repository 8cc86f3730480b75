import Foundation

/// LVM-style automatic extension of file-backed COW devices, without a separate daemon: when a
/// snapshot's fill reaches `thresholdPercent`, its COW grows by `growPercent` of its size.
/// Also decides the fill warnings (at 80% and every 5% above) and the one-time loud report of
/// an invalidated snapshot.
///
/// Invariant: each warning level and each invalidation is reported once per snapshot.
public struct AutoextendPolicy: Sendable {
    public private(set) var thresholdPercent: Double?
    public private(set) var growPercent: Double
    private var warnedLevel: [String: Int] = [:]
    private var reportedInvalid: Set<String> = []

    /// `threshold` nil disables extension (warnings still happen). Threshold must be 50...99.
    public init(thresholdPercent: Double?, growPercent: Double) throws {
        try AutoextendSettings.check(thresholdPercent: thresholdPercent, growPercent: growPercent)
        self.thresholdPercent = thresholdPercent
        self.growPercent = growPercent
    }

    /// Off (no extension; warnings and alarms still), until it adopts settings.
    public init() {
        thresholdPercent = nil
        growPercent = AutoextendSettings.defaultGrowPercent
    }

    /// Takes `settings` (the pool's, changed by `pool set` meanwhile), keeping what was reported.
    public mutating func adopt(_ settings: AutoextendSettings?) {
        thresholdPercent = settings?.thresholdPercent
        growPercent = settings?.growPercent ?? AutoextendSettings.defaultGrowPercent
    }

    /// What to do for one snapshot now.
    public enum Action: Equatable, Sendable {
        case extend(name: String, to: UInt64)
        case warn(String)
        case alarm(String)
    }

    public mutating func review(_ snapshot: SnapshotReport, fileBacked: Bool) -> [Action] {
        var actions: [Action] = []
        if snapshot.state == "invalid" {
            if reportedInvalid.insert(snapshot.name).inserted {
                actions.append(.alarm("snapshot \(snapshot.name) is INVALID: \(snapshot.reason ?? "invalidated"); its data is lost, delete it"))
            }
            return actions
        }
        guard snapshot.state == "active" || snapshot.state == "overflow" else { return actions }
        let fill = snapshot.fillPercent
        if fill >= 80 {
            let level = 80 + Int((fill - 80) / 5) * 5
            if level > warnedLevel[snapshot.name, default: 0] {
                warnedLevel[snapshot.name] = level
                actions.append(.warn("snapshot \(snapshot.name) COW is \(Int(fill))% full"))
            }
        } else {
            warnedLevel[snapshot.name] = nil
        }
        if let thresholdPercent, fileBacked, fill >= thresholdPercent {
            let growth = UInt64((Double(snapshot.cowTotalBytes) * growPercent / 100).rounded(.up))
            let chunk = UInt64(snapshot.chunkSize)
            let target = (snapshot.cowTotalBytes + max(growth, chunk) + chunk - 1) / chunk * chunk
            actions.append(.extend(name: snapshot.name, to: target))
        }
        return actions
    }
}

/// A pool's autoextend settings, as `pool set` records them in its registry (like the
/// `snapshot_autoextend_*` settings of lvm.conf).
///
/// Invariant: checked by `check` (threshold 50-99, growth 1-1000) before it is recorded.
public struct AutoextendSettings: Codable, Sendable, Equatable {
    public static let defaultGrowPercent: Double = 20
    /// Grow a file-backed COW when it is this full (percent); nil: never.
    public var thresholdPercent: Double?
    public var growPercent: Double

    enum CodingKeys: String, CodingKey {
        case thresholdPercent = "threshold_percent", growPercent = "grow_percent"
    }

    public init(thresholdPercent: Double?, growPercent: Double = AutoextendSettings.defaultGrowPercent) throws {
        try Self.check(thresholdPercent: thresholdPercent, growPercent: growPercent)
        self.thresholdPercent = thresholdPercent
        self.growPercent = growPercent
    }

    static func check(thresholdPercent: Double?, growPercent: Double) throws {
        if let thresholdPercent, !(50...99).contains(thresholdPercent) {
            throw ControllerError.refused("--autoextend-threshold must be from 50 to 99 (percent)")
        }
        guard growPercent >= 1, growPercent <= 1000 else { throw ControllerError.refused("--autoextend-percent must be from 1 to 1000") }
    }

    /// "at 70% full, by 20% of the COW", or "off".
    public var description: String {
        thresholdPercent.map { "at \(Int($0))% full, by \(Int(growPercent))% of the COW" } ?? "off"
    }
}

/// One holder's autoextend duty, run once a second (by `serve`, and by a TUI driving the pool):
/// reviews every snapshot under the settings, grows the COWs that reached the threshold, and
/// says what happened.
///
/// Invariant: a failing extension is retried at every step but reported once per snapshot and
/// error (`reportedFailures`).
public struct Autoextender: Sendable {
    /// What a step did or found, for the holder to report.
    public enum Report: Equatable, Sendable {
        case warning(String), alarm(String), extended(String), failed(String)
    }

    private var policy = AutoextendPolicy()
    private var reportedFailures: [String: String] = [:]

    public init() {}

    /// Reviews `status` (the pool's now) under `settings`, extending what needs it.
    public mutating func step(_ controller: Controller, status: PoolStatus?, settings: AutoextendSettings?) async -> [Report] {
        policy.adopt(settings)
        var reports: [Report] = []
        for snapshot in status?.origins.flatMap(\.snapshots) ?? [] {
            for action in policy.review(snapshot, fileBacked: controller.isFileBacked(snapshot: snapshot.name)) {
                switch action {
                case .warn(let text): reports.append(.warning(text))
                case .alarm(let text): reports.append(.alarm(text))
                case let .extend(name, size):
                    do {
                        try await controller.extendSnapshot(name: name, cowSize: size)
                        reportedFailures[name] = nil
                        reports.append(.extended("autoextended snapshot \(name) to \(ByteSize.describe(size))"))
                    } catch {
                        let text = "\(error)"
                        guard reportedFailures[name] != text else { continue }
                        reportedFailures[name] = text
                        reports.append(.failed("autoextend of \(name) failed: \(text) (retrying every second, reported once)"))
                    }
                }
            }
        }
        return reports
    }
}

extension Autoextender {
    /// Steps once a second under the pool's current settings, the first after a second (a short
    /// command never pays for it), until cancelled; hands each report to `report`. What a
    /// holder of the pool other than `serve` runs while it holds it (`serve`'s watch does more).
    public static func run(_ controller: Controller, report: (Report) -> Void) async {
        var autoextender = Autoextender()
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            if Task.isCancelled { return }
            for item in await autoextender.step(controller, status: try? controller.status(), settings: controller.registry.autoextend) {
                report(item)
            }
        }
    }
}

extension Controller {
    /// Records the pool's autoextend settings; a server applies them within a second.
    public func setAutoextend(_ settings: AutoextendSettings) async throws {
        try await command {
            try editRegistry { $0.autoextend = settings }
            events.record("pool: autoextend \(settings.description)")
        }
    }

    /// Whether snapshot `name`'s COW is a regular file (the only kind snapvol can grow).
    public func isFileBacked(snapshot name: String) -> Bool {
        guard let record = registry.snapshot(named: name)?.snapshot else { return false }
        var info = stat()
        return stat(record.cowPath, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
    }
}
