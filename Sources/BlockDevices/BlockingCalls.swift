import NIOPosix

/// Runs system calls that may block for milliseconds (`fdatasync`) on threads of their own, so
/// they never hold one of Swift's cooperative threads (two on a 2-core machine): with eight
/// snapshots committing at once, eight flushes then wait on the disk together instead of two
/// at a time, and nothing else stalls behind them.
///
/// Invariant: the pool is started once, lives as long as the process, and its threads only
/// ever run the bodies handed to `run`.
public enum BlockingCalls {
    private static let pool: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 16)
        pool.start()
        return pool
    }()

    public static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await pool.runIfActive(body)
    }
}
