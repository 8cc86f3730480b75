/// The exceptions of one store as a policy sees them: the completed (durable) table and the
/// pending exceptions being copied or committed. Shared by every policy (snapshots, the
/// bad-block remapper); the policy decides when to begin one and what I/O to it does.
///
/// Invariant: a chunk is in at most one of `completed` and `pending`.
public struct ExceptionSet: Sendable {
    public var completed = ExceptionCache()
    public var pending: [ChunkIndex: PendingException] = [:]

    /// Where a chunk stands.
    public enum Lookup: Sendable {
        case completed(ChunkIndex)
        case pending(PendingException)
        case absent
        /// The completed table's answer is in a metadata area: resolve it, then look again.
        case unloaded
    }

    public init(completed: ExceptionCache = ExceptionCache()) { self.completed = completed }

    public mutating func lookup(_ chunk: ChunkIndex, resolved: ExceptionCache.Resolution? = nil) -> Lookup {
        switch completed.lookup(chunk, resolved: resolved) {
        case .mapped(let new): return .completed(new)
        case .absent: return pendingLookup(chunk) ?? .absent
        case .unloaded: return pendingLookup(chunk) ?? .unloaded
        }
    }

    /// The pending exception of `chunk`, if any; no hashing while nothing is pending (the
    /// usual state of a snapshot being read).
    private func pendingLookup(_ chunk: ChunkIndex) -> Lookup? {
        guard !pending.isEmpty, let exception = pending[chunk] else { return nil }
        return .pending(exception)
    }

    /// Allocates a store chunk for `chunk` and records the exception as pending.
    /// Throws the store's error (`StoreError.full`, `.invalidated`).
    public mutating func begin(_ chunk: ChunkIndex, in store: any ExceptionStore) throws -> PendingException {
        let exception = PendingException(old: chunk, new: try store.prepareException())
        pending[chunk] = exception
        return exception
    }

    /// Ends a pending exception: it joins `completed` if it was committed (and `keep` allows).
    public mutating func end(_ exception: PendingException, committed: Bool, keep: Bool = true) {
        pending[exception.old] = nil
        if committed && keep { completed.insert(old: exception.old, new: exception.new) }
    }
}
