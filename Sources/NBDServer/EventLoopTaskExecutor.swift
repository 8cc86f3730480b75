import NIOCore

/// Runs a task's jobs on a connection's event loop, so a request is read, carried out and
/// answered on one thread: a client sending one request at a time then costs no thread
/// wake-ups beyond the socket's own (two hops per request cost more than the I/O on a VM).
/// The engine never blocks for long on it: flushes run on `BlockingCalls`' threads, and reads
/// and writes of the page cache take microseconds.
///
/// Invariant: every job enqueued runs exactly once, on `loop`, in enqueue order.
final class EventLoopTaskExecutor: TaskExecutor {
    let loop: any EventLoop

    init(_ loop: any EventLoop) { self.loop = loop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
