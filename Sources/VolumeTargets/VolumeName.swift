import Synchronization

/// A volume's name in its pool, which a rename may change while I/O goes on.
///
/// Invariant: no I/O path reads it (only events, errors and status do), so its lock is never
/// taken per request.
public final class VolumeName: Sendable {
    private let current: Mutex<String>

    public init(_ name: String) { current = Mutex(name) }

    public var value: String { current.withLock { $0 } }

    public func change(to newName: String) { current.withLock { $0 = newName } }
}
