/// A chunk of the origin at one chunk size: the unit in which snapshot reads sent to the origin
/// are tracked and in which copies are shared between snapshots.
struct ChunkKey: Hashable {
    let shift: Int
    let chunk: UInt64
}

/// Snapshot reads that were sent to the origin and are still in flight (the 2003 list's
/// "reads before writes"). An origin write to a tracked chunk waits until its reads complete,
/// woken by the last one, never by polling.
///
/// Invariant: `counts[key]` is the number of reads of `key` in flight; absent means zero.
struct ReadTracker {
    private var counts: [ChunkKey: Int] = [:]
    private var waiters: [ChunkKey: [CheckedContinuation<Void, Never>]] = [:]
    /// How many tracked keys use each chunk shift (so writes check only the shifts in use).
    private var shifts: [Int: Int] = [:]

    var isEmpty: Bool { counts.isEmpty }

    mutating func track(_ key: ChunkKey) {
        counts[key, default: 0] += 1
        shifts[key.shift, default: 0] += 1
    }

    /// Ends one read of `key`; returns the waiters to resume (outside the lock).
    mutating func untrack(_ key: ChunkKey) -> [CheckedContinuation<Void, Never>] {
        shifts[key.shift]! -= 1
        if shifts[key.shift] == 0 { shifts[key.shift] = nil }
        counts[key]! -= 1
        guard counts[key] == 0 else { return [] }
        counts[key] = nil
        return waiters.removeValue(forKey: key) ?? []
    }

    /// A tracked key overlapping `length` bytes at `offset`, if any.
    func firstBusy(offset: UInt64, length: Int) -> ChunkKey? {
        guard !counts.isEmpty, length > 0 else { return nil }
        for shift in shifts.keys {
            let first = offset >> UInt64(shift)
            let last = (offset + UInt64(length) - 1) >> UInt64(shift)
            for chunk in first...last {
                let key = ChunkKey(shift: shift, chunk: chunk)
                if counts[key] != nil { return key }
            }
        }
        return nil
    }

    mutating func addWaiter(_ continuation: CheckedContinuation<Void, Never>, for key: ChunkKey) {
        waiters[key, default: []].append(continuation)
    }
}
