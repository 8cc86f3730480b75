import ArgumentParser
import Benchmarks
import Foundation

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure the engine against raw I/O on the same files: medians and same-run ratios.",
        discussion: """
            Each round (one run at one chunk size) times raw I/O on the origin file, then the same \
            request streams through the engine: origin writes with 0, 1 and N snapshots (first write \
            and rewrite; sequential first writes with 1 and N snapshots also with the origin out of \
            the page cache), origin and snapshot reads, activation of a full COW, merge. It also reports the \
            bytes the engine read and wrote per byte written to the origin. Each case's ratio is taken \
            against its baseline timed just before it (raw I/O on the origin file; 1 snapshot for the \
            N-snapshot cases), every case starting after sync(2); warm reads (from the page \
            cache, about 10 ms a case) alternate with their baseline 5 times and keep each side's \
            median. Requests are sent one at a time \
            (queue depth 1, like fio's psync engine); every write case ends with a flush inside the \
            timed interval. Files are created in --dir and removed afterwards.
            """)

    @Option(help: "Directory for the origin and COW files (default: the temp directory).") var dir: String?
    @Option(help: "Origin size.") var size: String = "64M"
    @Option(help: "4 KiB requests in each random case.") var randomOps: Int = 4096
    @Option(help: "Comma-separated chunk sizes.") var chunk: String = "4K,16K,64K"
    @Option(help: "Runs (each figure is the median over runs).") var runs: Int = 3
    @Option(help: "Snapshots in the many-snapshot cases.") var snapshots: Int = 8
    @Option(help: "Seed of the random patterns.") var seed: UInt64 = 42
    @Flag(help: "Print the measurements and summary as JSON.") var json = false
    @Flag(help: "Run the exception-cache example instead: a sparse 100 GiB origin, a 5 GiB COW filled with 16 KiB chunks, tables unlimited and at 1 MiB.")
    var cacheExample = false

    func run() async throws {
        try await guarded {
            let configuration = try makeConfiguration()
            let report = try await BenchRunner(configuration: configuration).run { message in
                FileHandle.standardError.write(Data("bench: \(message)\n".utf8))
            }
            emit(json ? try report.json() : report.table)
        }
    }

    private func makeConfiguration() throws -> BenchConfiguration {
        let directory = absolutePath(dir ?? NSTemporaryDirectory())
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ValidationError("--dir \(directory): not a directory")
        }
        var configuration = BenchConfiguration(directory: directory)
        configuration.originBytes = try bytes(size)
        guard configuration.originBytes >= 1 << 20, configuration.originBytes % (1 << 20) == 0 else {
            throw ValidationError("--size \(size): must be a whole number of MiB, at least 1M")
        }
        configuration.chunkSizes = try chunk.split(separator: ",").map { text in
            let value = try bytes(String(text))
            guard [4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288, 1048576].contains(value) else {
                throw ValidationError("--chunk \(text): must be a power of two from 4K to 1M")
            }
            return Int(value)
        }
        guard runs >= 1 else { throw ValidationError("--runs \(runs): must be at least 1") }
        guard snapshots >= 1 else { throw ValidationError("--snapshots \(snapshots): must be at least 1") }
        guard randomOps >= 1 else { throw ValidationError("--random-ops \(randomOps): must be at least 1") }
        configuration.runs = runs
        configuration.manySnapshots = snapshots
        configuration.randomOperations = randomOps
        configuration.seed = seed
        configuration.cacheExample = cacheExample
        return configuration
    }
}
