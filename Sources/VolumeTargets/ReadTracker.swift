/// Snapshot reads that were sent to the origin and are still in flight (the 2003 list's
/// "reads before writes"): the byte ranges of the origin each read covers, under the token of
/// the read that sent them. An origin write overlapping one waits until that read ends, woken
/// by it, never by polling.
///
/// A plain array scanned linearly: it holds one entry per read in flight (a handful, at most the
/// clients' queue depth), so a scan is cheaper than hashing, and tracking a read allocates
/// nothing once the array has grown to the usual depth.
///
/// Invariant: `entries` holds exactly the ranges of the reads in flight; a waiter is kept with
/// the entry it waits for and is resumed when that entry's read ends.
struct ReadTracker {
    /// Names one snapshot read's tracked ranges.
    struct Token: Equatable {
        fileprivate let value: UInt64
    }

    private struct Entry {
        let token: Token
        let range: Range<UInt64>
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private var entries: [Entry] = []
    private var issued: UInt64 = 0

    var isEmpty: Bool { entries.isEmpty }

    /// Tracks `range` for the read named by `token`, or for a new read if `token` is nil;
    /// returns the read's token.
    mutating func track(_ range: Range<UInt64>, joining token: Token? = nil) -> Token {
        let token = token ?? newToken()
        entries.append(Entry(token: token, range: range))
        return token
    }

    private mutating func newToken() -> Token {
        issued &+= 1
        return Token(value: issued)
    }

    /// Ends the read named by `token`; returns the waiters to resume (outside the lock).
    mutating func untrack(_ token: Token) -> [CheckedContinuation<Void, Never>] {
        var woken: [CheckedContinuation<Void, Never>] = []
        var index = entries.count - 1
        while index >= 0 {
            if entries[index].token == token {
                if !entries[index].waiters.isEmpty { woken += entries[index].waiters }
                entries.swapAt(index, entries.count - 1)
                entries.removeLast()
            }
            index -= 1
        }
        return woken
    }

    /// Whether a read in flight overlaps `length` bytes at `offset`.
    func isBusy(offset: UInt64, length: Int) -> Bool {
        firstBusy(offset: offset, length: length) != nil
    }

    /// Queues `continuation` behind the first read in flight overlapping the range; returns
    /// false (and keeps nothing) when none does.
    mutating func addWaiter(_ continuation: CheckedContinuation<Void, Never>, offset: UInt64, length: Int) -> Bool {
        guard let index = firstBusy(offset: offset, length: length) else { return false }
        entries[index].waiters.append(continuation)
        return true
    }

    private func firstBusy(offset: UInt64, length: Int) -> Int? {
        guard !entries.isEmpty, length > 0 else { return nil }
        let range = offset..<offset + UInt64(length)
        return entries.firstIndex { $0.range.overlaps(range) }
    }
}
