import AsyncPrimitives

/// Origin writes that were acknowledged but still wait for their chunks' copies to commit
/// before they may reach the device (write-back mode, see `Origin.write`).
///
/// Invariants: entries are numbered in the order the writes were accepted; a queued write
/// reaches the device only after every earlier overlapping entry did; an origin read of a
/// queued range waits for it; `flush` waits for every entry accepted before it and reports a
/// queued write that failed (once, like `fsync` reports a lost page).
struct WriteBackQueue {
    struct Entry {
        let range: Range<UInt64>
        let done: OneShotEvent<Void>
    }

    private(set) var entries: [UInt64: Entry] = [:]
    private var nextID: UInt64 = 0
    /// The first queued write that failed since the last flush reported one.
    var failure: (any Error)?

    var isEmpty: Bool { entries.isEmpty }

    /// How many writes are queued, and their bytes.
    var figures: QueuedWrites {
        QueuedWrites(writes: entries.count, bytes: entries.values.reduce(0) { $0 + $1.range.upperBound - $1.range.lowerBound })
    }

    /// Registers a write; returns its number and its completion event.
    mutating func add(_ range: Range<UInt64>) -> (UInt64, OneShotEvent<Void>) {
        let entry = Entry(range: range, done: OneShotEvent())
        let id = nextID
        nextID += 1
        entries[id] = entry
        return (id, entry.done)
    }

    mutating func remove(_ id: UInt64) -> OneShotEvent<Void>? { entries.removeValue(forKey: id)?.done }

    func hasEntry(overlapping range: Range<UInt64>) -> Bool {
        entries.values.contains { $0.range.overlaps(range) }
    }

    /// Entries accepted before `id` (all when nil) that overlap `range` (any when nil).
    func blockers(of range: Range<UInt64>?, before id: UInt64? = nil) -> [OneShotEvent<Void>] {
        entries.compactMap { key, entry in
            if let id, key >= id { return nil }
            if let range, !entry.range.overlaps(range) { return nil }
            return entry.done
        }
    }
}
