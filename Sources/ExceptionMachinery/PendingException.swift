import AsyncPrimitives

/// An exception that has been allocated but is not yet durable: its chunk is being copied or
/// its record committed. I/O that needs the chunk waits on `completion`.
///
/// Invariant: `completion` is signalled exactly once, with true when the exception is durable
/// and in the completed table, false when it failed (its store is then invalid).
public final class PendingException: Sendable {
    public let old: ChunkIndex
    public let new: ChunkIndex
    public let completion = OneShotEvent<Bool>()

    public init(old: ChunkIndex, new: ChunkIndex) {
        self.old = old
        self.new = new
    }

    /// Waits until the exception is durable (true) or has failed (false).
    public func wait() async -> Bool { await completion.wait() }
}
