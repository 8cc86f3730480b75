import Dispatch

/// Suspends the calling task for about `duration`, timed by a dispatch timer rather than by
/// `Task.sleep`: the wake-up goes straight to the task's executor. `Task.sleep` wakes a task
/// through the global cooperative pool, so while tests elsewhere in the process block those
/// threads (two on a 2-core machine) even a 50 µs sleep waits for one of them to come free,
/// also in a task that prefers an executor of its own. Not cancellable: it always waits the
/// whole duration.
public func dispatchPause(for duration: Duration) async {
    let (seconds, attoseconds) = duration.components
    let nanoseconds = Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000)
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(max(0, nanoseconds))) {
            continuation.resume()
        }
    }
}
