import ExceptionMachinery

/// A snapshot whose store's metadata is loaded, not yet a member of its origin.
struct LoadedSnapshot: Sendable {
    let snapshot: Snapshot
    let tables: SnapshotTables
}

/// One snapshot to join in `Origin.attach(together:)`.
public struct SnapshotAttachment: Sendable {
    public let origin: Origin
    public let name: String
    public let store: any ExceptionStore
    public let cacheBudget: ExceptionCache.Budget?

    public init(origin: Origin, name: String, store: any ExceptionStore, cacheBudget: ExceptionCache.Budget? = nil) {
        self.origin = origin
        self.name = name
        self.store = store
        self.cacheBudget = cacheBudget
    }
}

extension Origin {
    /// Loads every store's metadata, then joins all the snapshots to their origins at one
    /// instant: every origin's gate is closed at once, and the joins happen before any reopens.
    ///
    /// Invariant (a consistent group, as a VM with several disks needs): if a snapshot of the
    /// group holds an origin write W, then every write V acknowledged before W was sent is held
    /// by the group's snapshot of V's origin. A write that entered its origin's gate before the
    /// gate closed is in (the close waits for it, queued write-back writes included, since they
    /// hold the gate); one that arrives later waits until every gate reopens and is out.
    ///
    /// Several snapshots of one origin are allowed (its gate is closed once). Nothing joins if a
    /// load fails.
    public static func attach(together attachments: [SnapshotAttachment]) async throws -> [Snapshot] {
        var loaded: [LoadedSnapshot] = []
        for attachment in attachments {
            loaded.append(try await attachment.origin.load(name: attachment.name, store: attachment.store,
                                                          cacheBudget: attachment.cacheBudget))
        }
        var origins: [Origin] = []
        for attachment in attachments where !origins.contains(where: { $0 === attachment.origin }) {
            origins.append(attachment.origin)
        }
        let joining = loaded
        await withGatesClosed(origins[...]) {
            for member in joining { member.snapshot.origin.join(member) }
        }
        return loaded.map(\.snapshot)
    }

    /// Runs `body` while every origin of `origins` has its gate closed. Gates close one after
    /// another, each waiting for its own I/O to drain; no origin's I/O waits for another
    /// origin, so the order cannot deadlock.
    private static func withGatesClosed(_ origins: ArraySlice<Origin>, _ body: () -> Void) async {
        guard let first = origins.first else { return body() }
        await first.withGateClosed { await withGatesClosed(origins.dropFirst(), body) }
    }
}
