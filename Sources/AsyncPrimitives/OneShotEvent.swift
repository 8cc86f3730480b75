import Synchronization

/// An event that happens once and carries a result; any number of tasks can wait for it.
///
/// Invariant: `signal` takes effect once (later calls are ignored); a waiter that arrives after
/// the signal returns at once with the same result. Waiting suspends, it never blocks a thread.
///
/// Its methods are inlinable so that callers in other modules get them specialized for their
/// `Value`: unspecialized, every call looked up generic metadata at run time (14% of all CPU
/// samples of 8-snapshot first writes at 4K chunks, session 9).
public final class OneShotEvent<Value: Sendable>: Sendable {
    @usableFromInline
    enum State {
        case waiting([CheckedContinuation<Value, Never>])
        case done(Value)
    }

    @usableFromInline
    let state: Mutex<State>

    /// (Initialized here, not where it is declared: a declaration's initial value is a function
    /// of this module, which is not specialized for callers.)
    @inlinable
    public init() { state = Mutex(.waiting([])) }

    /// Whether `signal` has been called.
    @inlinable
    public var isSignalled: Bool {
        state.withLock { if case .done = $0 { return true } else { return false } }
    }

    /// Completes the event with `value`, resuming every waiter. Returns false if it was already done.
    @inlinable @discardableResult
    public func signal(_ value: Value) -> Bool {
        let waiters: [CheckedContinuation<Value, Never>]? = state.withLock { state in
            guard case .waiting(let list) = state else { return nil }
            state = .done(value)
            return list
        }
        guard let waiters else { return false }
        for waiter in waiters { waiter.resume(returning: value) }
        return true
    }

    /// Suspends until the event is signalled and returns its value.
    @inlinable
    public func wait() async -> Value {
        await withCheckedContinuation { continuation in
            let ready: Value? = state.withLock { state in
                switch state {
                case .done(let value): return value
                case .waiting(var list):
                    list.append(continuation)
                    state = .waiting(list)
                    return nil
                }
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }
}

extension OneShotEvent where Value == Void {
    @inlinable @discardableResult
    public func signal() -> Bool { signal(()) }
}
