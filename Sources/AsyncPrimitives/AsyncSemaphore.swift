import DequeModule
import Synchronization

/// A counting semaphore for tasks: at most `limit` holders at once, waiters served first come,
/// first served. Waiting suspends the task; it never blocks a thread.
public final class AsyncSemaphore: Sendable {
    private struct State {
        var available: Int
        var waiters: Deque<CheckedContinuation<Void, Never>> = []
    }

    private let state: Mutex<State>
    public let limit: Int

    public init(limit: Int) {
        precondition(limit > 0, "a semaphore needs at least one permit")
        self.limit = limit
        state = Mutex(State(available: limit))
    }

    /// Number of permits currently held.
    public var inUse: Int { state.withLock { limit - $0.available } }

    public func acquire() async {
        await withCheckedContinuation { continuation in
            let granted = state.withLock { state -> Bool in
                if state.available > 0 && state.waiters.isEmpty {
                    state.available -= 1
                    return true
                }
                state.waiters.append(continuation)
                return false
            }
            if granted { continuation.resume() }
        }
    }

    public func release() {
        let next: CheckedContinuation<Void, Never>? = state.withLock { state in
            if let first = state.waiters.popFirst() { return first }
            state.available += 1
            return nil
        }
        next?.resume()
    }

    /// Runs `body` holding one permit.
    public func withPermit<T>(_ body: () async throws -> T) async rethrows -> T {
        await acquire()
        defer { release() }
        return try await body()
    }
}
