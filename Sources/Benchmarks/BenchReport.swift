import Foundation

/// One measured case of one round: what ran, with which chunk size, in which run.
public struct Measurement: Sendable, Codable {
    public var name: String
    public var chunkBytes: Int?
    public var run: Int
    public var sample: Sample
    /// The case this one is compared with, measured in the same round.
    public var baseline: String?
    /// The baseline measured again just before this case (raw I/O with the same pattern on the
    /// origin file, or one snapshot for an N-snapshot case); when present the ratio uses it
    /// rather than the round's first measurement of `baseline`.
    public var adjacentBaseline: Sample?
}

/// A figure that is not a throughput (bytes per exception, resident bytes, reads per miss).
public struct Figure: Sendable, Codable {
    public var name: String
    public var chunkBytes: Int?
    public var run: Int
    public var value: Double
    public var unit: String
}

/// Everything one `snapvol bench` run measured, and its summary.
///
/// Invariant: a ratio is always taken between two samples of the same round (same run, same
/// chunk size), then the median of those ratios is reported, so a noisy neighbour slowing one
/// round down affects both sides of each ratio alike. Where the baseline was measured again
/// just before the case (`adjacentBaseline`), that sample is the one used.
public struct BenchReport: Sendable, Codable {
    public var machine: String
    public var date: String
    public var settings: [String: String]
    public var measurements: [Measurement] = []
    public var figures: [Figure] = []

    /// One summarised row.
    public struct Row: Sendable, Codable {
        public var name: String
        public var chunkBytes: Int?
        public var medianMiBps: Double
        public var medianIOPS: Double
        public var minMiBps: Double
        public var maxMiBps: Double
        public var baseline: String?
        public var medianRatio: Double?
        public var runs: Int
        /// Heap allocations per operation (median over the runs); nil when not counted.
        public var allocationsPerOperation: Double?
    }

    public var rows: [Row] {
        Self.groupedInOrder(measurements) { "\($0.chunkBytes ?? 0)|\($0.name)" }.map { group in
            let rates = group.map(\.sample.mebibytesPerSecond)
            let ratios = group.compactMap(ratio(of:))
            let allocations = group.compactMap(\.sample.allocationsPerOperation)
            return Row(name: group[0].name, chunkBytes: group[0].chunkBytes, medianMiBps: median(rates),
                       medianIOPS: median(group.map(\.sample.operationsPerSecond)),
                       minMiBps: rates.min() ?? 0, maxMiBps: rates.max() ?? 0, baseline: Self.label(of: group[0]),
                       medianRatio: ratios.isEmpty ? nil : median(ratios), runs: group.count,
                       allocationsPerOperation: allocations.isEmpty ? nil : median(allocations))
        }
    }

    /// Median of each figure over the runs.
    public var figureRows: [(name: String, chunkBytes: Int?, value: Double, unit: String)] {
        Self.groupedInOrder(figures) { "\($0.chunkBytes ?? 0)|\($0.name)" }.map { group in
            (group[0].name, group[0].chunkBytes, median(group.map(\.value)), group[0].unit)
        }
    }

    /// `items` grouped by `key`, groups in order of first appearance (each group non-empty).
    private static func groupedInOrder<T>(_ items: [T], by key: (T) -> String) -> [[T]] {
        var order: [String] = []
        var groups: [String: [T]] = [:]
        for item in items {
            let k = key(item)
            if groups[k] == nil { order.append(k) }
            groups[k, default: []].append(item)
        }
        return order.map { groups[$0]! }
    }

    /// The baseline's name, marked when the ratio uses the sample measured just before.
    private static func label(of m: Measurement) -> String? {
        guard let baseline = m.baseline else { return nil }
        return m.adjacentBaseline == nil ? baseline : "\(baseline), just before"
    }

    private func ratio(of m: Measurement) -> Double? {
        guard let baseline = m.baseline else { return nil }
        if let adjacent = m.adjacentBaseline {
            return adjacent.mebibytesPerSecond > 0 ? m.sample.mebibytesPerSecond / adjacent.mebibytesPerSecond : nil
        }
        guard let base = measurements.first(where: {
            $0.name == baseline && $0.run == m.run && ($0.chunkBytes == nil || $0.chunkBytes == m.chunkBytes)
        }) else { return nil }
        let b = base.sample.mebibytesPerSecond
        return b > 0 ? m.sample.mebibytesPerSecond / b : nil
    }
}

func median(_ values: [Double]) -> Double {
    guard !values.isEmpty else { return 0 }
    let sorted = values.sorted()
    let mid = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

extension BenchReport {
    /// The report as an aligned text table (medians; ratio to the named baseline).
    public var table: String {
        var lines = ["snapvol bench — \(date) — \(machine)",
                     settings.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "), ""]
        let rows = self.rows
        let counted = rows.contains { $0.allocationsPerOperation != nil }
        lines.append(pad("case", Self.nameWidth) + pad("chunk", 7) + pad("MiB/s", 10) + pad("IOPS", 10)
                     + (counted ? pad("allocs/op", 11) : "") + pad("ratio", 8) + "vs")
        for row in rows {
            let chunk = row.chunkBytes.map { IOPattern.label($0) } ?? "-"
            let ratio = row.medianRatio.map { String(format: "%.2f", $0) } ?? ""
            let allocations = counted ? pad(row.allocationsPerOperation.map { String(format: "%.2f", $0) } ?? "", 11) : ""
            lines.append(pad(row.name, Self.nameWidth) + pad(chunk, 7) + pad(String(format: "%.1f", row.medianMiBps), 10)
                         + pad(String(format: "%.0f", row.medianIOPS), 10) + allocations + pad(ratio, 8) + (row.baseline ?? ""))
        }
        if !counted {
            lines.append("(allocations not counted: run under LD_PRELOAD=<build dir>/libMallocInterposerSwift.so to count them)")
        }
        if !figures.isEmpty {
            lines.append("")
            for f in figureRows {
                let chunk = f.chunkBytes.map { IOPattern.label($0) } ?? "-"
                lines.append(pad(f.name, Self.nameWidth) + pad(chunk, 7) + String(format: "%.3f", f.value) + " " + f.unit)
            }
        }
        return lines.joined(separator: "\n")
    }

    public func json() throws -> String {
        struct Output: Encodable {
            let report: BenchReport
            let summary: [BenchReport.Row]
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try encoder.encode(Output(report: self, summary: rows)), as: UTF8.self)
    }

    /// Width of the name column: the longest case name fits.
    private static let nameWidth = 64

    private func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
    }
}
