import Foundation
import Synchronization

/// A task executor with threads of its own. Tests that wait for subprocesses block Swift's
/// cooperative threads (two on a 2-core machine) for seconds at a time; an async test run under
/// this executor's preference (`withTaskExecutorPreference`) makes progress meanwhile, so its
/// deadline measures the code under test, not the other tests.
///
/// Invariant: every job enqueued runs exactly once, on one of the executor's threads, and jobs
/// are taken in enqueue order; the threads live as long as the process.
public final class DedicatedExecutor: TaskExecutor {
    /// Two threads, started on first use.
    public static let shared = DedicatedExecutor(threads: 2)
    /// Two more, for the tests that block (`MayBlock`): as many as the cooperative threads they
    /// used to hold, so the run's load stays what it was.
    public static let forBlockingTests = DedicatedExecutor(threads: 2)

    private let jobs = Mutex<[UnownedJob]>([])
    /// Counts jobs enqueued and not yet taken.
    private let ready = DispatchSemaphore(value: 0)

    private init(threads: Int) {
        for index in 0..<threads {
            let thread = Thread { [self] in runJobs() }
            thread.name = "test-executor-\(index)"
            thread.start()
        }
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        jobs.withLock { $0.append(job) }
        ready.signal()
    }

    private func runJobs() -> Never {
        while true {
            ready.wait()
            let job = jobs.withLock { $0.removeFirst() }
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}
