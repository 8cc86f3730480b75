import Foundation

/// LVM-style automatic extension of file-backed COW devices, without a separate daemon: when a
/// snapshot's fill reaches `thresholdPercent`, its COW grows by `growPercent` of its size.
/// Also decides the fill warnings (at 80% and every 5% above) and the one-time loud report of
/// an invalidated snapshot.
///
/// Invariant: each warning level and each invalidation is reported once per snapshot.
public struct AutoextendPolicy: Sendable {
    public let thresholdPercent: Double?
    public let growPercent: Double
    private var warnedLevel: [String: Int] = [:]
    private var reportedInvalid: Set<String> = []

    /// `threshold` nil disables extension (warnings still happen). Threshold must be 50...99.
    public init(thresholdPercent: Double?, growPercent: Double) throws {
        if let thresholdPercent, !(50...99).contains(thresholdPercent) {
            throw ControllerError.refused("--autoextend-threshold must be from 50 to 99 (percent)")
        }
        guard growPercent > 0, growPercent <= 1000 else { throw ControllerError.refused("--autoextend-percent must be from 1 to 1000") }
        self.thresholdPercent = thresholdPercent
        self.growPercent = growPercent
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

extension Controller {
    /// Whether snapshot `name`'s COW is a regular file (the only kind snapvol can grow).
    public func isFileBacked(snapshot name: String) -> Bool {
        guard let record = registry.snapshot(named: name)?.snapshot else { return false }
        var info = stat()
        return stat(record.cowPath, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
    }
}
