import BlockDevices
import ExceptionMachinery
import Foundation
import VolumeTargets

/// Runs the benchmark: in each round (one run, one chunk size) raw I/O on the origin file
/// first, then the same request streams through the engine, so every ratio compares two
/// measurements taken minutes apart at most.
public struct BenchRunner: Sendable {
    public let configuration: BenchConfiguration

    public init(configuration: BenchConfiguration) { self.configuration = configuration }

    public func run(progress: @Sendable (String) -> Void = { _ in }) async throws -> BenchReport {
        var report = BenchReport(machine: Self.machine(), date: ISO8601DateFormatter().string(from: Date()),
                                 settings: configuration.settings)
        if configuration.cacheExample {
            let example = CacheExample(directory: configuration.directory, runs: configuration.runs,
                                       reads: configuration.randomOperations, seed: configuration.seed)
            try await example.measure(into: &report, progress: progress)
            report.figures.append(Figure(name: "peak resident memory of the bench process", chunkBytes: nil, run: 0,
                                         value: Double(ProcessMemory.peakResidentBytes()) / 1_048_576, unit: "MiB"))
            return report
        }
        let volumes = BenchVolumes(directory: configuration.directory, originBytes: configuration.originBytes)
        defer { volumes.removeAll() }
        let device = try await volumes.createOrigin()
        for run in 1...configuration.runs {
            for chunkBytes in configuration.chunkSizes {
                progress("run \(run)/\(configuration.runs), chunk \(IOPattern.label(chunkBytes))")
                var round = BenchRound(configuration: configuration, volumes: volumes, device: device,
                                       geometry: try ChunkGeometry(chunkBytes: chunkBytes), run: run)
                try await round.measure()
                report.measurements += round.measurements
                report.figures += round.figures
            }
        }
        report.figures.append(Figure(name: "peak resident memory of the bench process", chunkBytes: nil, run: 0,
                                     value: Double(ProcessMemory.peakResidentBytes()) / 1_048_576, unit: "MiB"))
        return report
    }

    static func machine() -> String {
        let cpu = ProcFile.text("/proc/cpuinfo")?
            .split(separator: "\n").first { $0.hasPrefix("model name") }?
            .split(separator: ":").last?.trimmingCharacters(in: .whitespaces) ?? "unknown CPU"
        return "\(ProcessInfo.processInfo.activeProcessorCount) cores, \(cpu)"
    }
}

/// Peak resident memory of this process (getrusage's ru_maxrss).
enum ProcessMemory {
    static func peakResidentBytes() -> UInt64 {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return UInt64(usage.ru_maxrss) * 1024
    }
}
