import DequeModule
import Synchronization

/// A counting semaphore for tasks: at most `limit` permits held at once, a holder taking one or
/// several; waiters served first come, first served (a large request is never overtaken by
/// smaller ones behind it, so it cannot starve). Waiting suspends the task; it never blocks a
/// thread.
public final class AsyncSemaphore: Sendable {
    private struct Waiter {
        let permits: Int
        let continuation: CheckedContinuation<Void, Never>
    }

    private struct State {
        var available: Int
        var waiters: Deque<Waiter> = []
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

    /// Number of tasks waiting.
    public var waiting: Int { state.withLock { $0.waiters.count } }

    /// Takes `permits` (at most `limit`: a larger request takes them all), waiting until they
    /// are free and every earlier waiter has been served.
    public func acquire(_ permits: Int = 1) async {
        let permits = Self.clamped(permits, limit)
        await withCheckedContinuation { continuation in
            let granted = state.withLock { state -> Bool in
                if state.available >= permits && state.waiters.isEmpty {
                    state.available -= permits
                    return true
                }
                state.waiters.append(Waiter(permits: permits, continuation: continuation))
                return false
            }
            if granted { continuation.resume() }
        }
    }

    /// Gives back `permits` taken by one `acquire` (with the same count), waking the waiters
    /// at the head of the queue that now fit.
    public func release(_ permits: Int = 1) {
        let permits = Self.clamped(permits, limit)
        let woken = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.available += permits
            var woken: [CheckedContinuation<Void, Never>] = []
            while let first = state.waiters.first, first.permits <= state.available {
                state.available -= first.permits
                woken.append(state.waiters.removeFirst().continuation)
            }
            return woken
        }
        for continuation in woken { continuation.resume() }
    }

    /// Runs `body` holding one permit.
    public func withPermit<T>(_ body: () async throws -> T) async rethrows -> T {
        await acquire()
        defer { release() }
        return try await body()
    }

    private static func clamped(_ permits: Int, _ limit: Int) -> Int { min(max(permits, 1), limit) }
}
