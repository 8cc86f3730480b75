@testable import Benchmarks
import Testing

/// `BenchReport`'s ratios against a simple model: per round, the case's rate over its
/// baseline's (the sample timed just before it when there is one, else the round's sample of
/// the named baseline), then the median over rounds.
@Suite struct BenchReportTests {
    private func sample(_ mebibytesPerSecond: Double) -> Sample {
        Sample(seconds: 1, bytes: UInt64(mebibytesPerSecond * 1_048_576), operations: 1)
    }

    private func measurement(_ name: String, run: Int, _ rate: Double, vs baseline: String? = nil,
                             adjacent: Double? = nil) -> Measurement {
        Measurement(name: name, chunkBytes: 65536, run: run, sample: sample(rate), baseline: baseline,
                    adjacentBaseline: adjacent.map(sample))
    }

    @Test func ratiosUseTheBaselineTimedJustBeforeEachCase() throws {
        var report = BenchReport(machine: "test", date: "now", settings: [:])
        for (run, raw, adjacent, engine) in [(1, 1000.0, 500.0, 400.0), (2, 2000.0, 800.0, 400.0), (3, 1000.0, 1000.0, 900.0)] {
            report.measurements.append(measurement("raw", run: run, raw))
            report.measurements.append(measurement("paired case", run: run, engine, vs: "raw", adjacent: adjacent))
            report.measurements.append(measurement("named case", run: run, engine, vs: "raw"))
        }
        let rows = Dictionary(uniqueKeysWithValues: report.rows.map { ($0.name, $0) })
        let paired = try #require(rows["paired case"])
        // Per-round ratios 0.8, 0.5, 0.9: the median is 0.8.
        #expect(abs((paired.medianRatio ?? 0) - 0.8) < 1e-9)
        #expect(paired.baseline == "raw, just before")
        let named = try #require(rows["named case"])
        // Against the round's own raw sample: 0.4, 0.2, 0.9 -> 0.4.
        #expect(abs((named.medianRatio ?? 0) - 0.4) < 1e-9)
        #expect(named.baseline == "raw")
        #expect(rows["raw"]?.medianRatio == nil)
    }

    @Test func aRepeatedCaseKeepsItsSampleOfMedianDuration() {
        let durations = [0.012, 0.029, 0.010, 0.011, 0.013]
        let samples = durations.map { Sample(seconds: $0, bytes: 32 << 20, operations: 8192) }
        // Sorted: 0.010, 0.011, 0.012, 0.013, 0.029: the slow outlier does not move the median.
        #expect(Sample.median(samples).seconds == 0.012)
        #expect(Sample.median(Array(samples.prefix(2))).seconds == 0.029)
        #expect(Sample.median([samples[2]]).seconds == 0.010)
    }
}
