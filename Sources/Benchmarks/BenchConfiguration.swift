/// What `snapvol bench` runs: sizes, chunk sizes, repetitions.
///
/// Invariant: the defaults finish in about a minute on a 2-core machine with a page cache
/// large enough for the origin (128 MiB).
public struct BenchConfiguration: Sendable {
    /// Where the origin and COW files are created (and removed afterwards).
    public var directory: String
    public var originBytes: UInt64 = 64 << 20
    /// 4 KiB requests in each random case.
    public var randomOperations = 4096
    public var chunkSizes = [4096, 16384, 65536]
    public var runs = 3
    /// Snapshots in the "many snapshots" cases.
    public var manySnapshots = 8
    public var seed: UInt64 = 42
    /// Run the exception-cache example (100 GiB origin, 5 GiB COW) instead of the engine suite.
    public var cacheExample = false

    public init(directory: String) { self.directory = directory }

    var settings: [String: String] {
        ["origin": IOPattern.label(Int(originBytes)), "random_ops": "\(randomOperations)",
         "chunks": chunkSizes.map { IOPattern.label($0) }.joined(separator: ","), "runs": "\(runs)",
         "many_snapshots": "\(manySnapshots)", "seed": "\(seed)", "queue_depth": "1",
         "suite": cacheExample ? "cache example" : "engine"]
    }
}
