import BlockDevices
import ExceptionMachinery

/// A point-in-time view of an origin, readable and writable like dm's snapshot target.
/// Its bookkeeping (exception table, pending exceptions, state) lives in its `Origin`, under
/// the origin's lock; this object is its handle.
///
/// Invariant: reading a snapshot returns the origin's content at the moment the snapshot joined
/// it, plus whatever was written to the snapshot since.
public final class Snapshot: Sendable {
    /// Its name in the pool; it changes only by `rename` (no I/O path reads it).
    public var name: String { currentName.value }
    private let currentName: VolumeName
    /// Strong: a handle a client still holds (an NBD session) after its snapshot was deleted
    /// and its origin removed must answer `inactive`, not reach a freed origin (with `unowned`
    /// such a read killed the server). The cycle through the origin's members is broken by
    /// `detach`, which every deletion and merge runs; an origin is removed only without
    /// snapshots. It also spares every I/O the atomic retain an `unowned` load costs.
    public let origin: Origin
    public let store: any ExceptionStore
    /// The store's chunk geometry (kept here: reading it through the existential costs a call per I/O).
    let geometry: ChunkGeometry
    /// The store's device (kept here: reading it through the existential costs a call and a
    /// retain per I/O, while a stored `let` is borrowed).
    let cowDevice: any BlockDevice
    /// The snapshot's size: its origin's (kept here: the range check of every read would
    /// otherwise go through the reference to the origin).
    public let size: UInt64
    public let counters = IOCounters()

    init(name: String, origin: Origin, store: any ExceptionStore) {
        currentName = VolumeName(name)
        self.origin = origin
        self.store = store
        self.geometry = store.geometry
        self.cowDevice = store.device
        self.size = origin.size
    }

    /// Gives the snapshot another name (its events and errors say the new one from now on).
    public func rename(to newName: String) { currentName.change(to: newName) }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) async throws {
        // The common read is done by `startSnapshotRead`, and returns without an `await` (see it).
        let progress = try origin.startSnapshotRead(self, into: buffer, at: offset)
        if !progress.isDone { try await origin.finishSnapshotRead(progress, self, into: buffer, at: offset) }
        counters.countRead(buffer.count)
    }

    /// The common read (`startSnapshotRead`), or false, holding nothing, when it did not finish.
    public func readImmediately(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Bool {
        let progress = try origin.startSnapshotRead(self, into: buffer, at: offset)
        guard progress.isDone else {
            origin.abandonSnapshotRead(progress)
            return false
        }
        counters.countRead(buffer.count)
        return true
    }

    public func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) async throws {
        try await origin.writeSnapshot(self, buffer, at: offset)
        counters.countWrite(buffer.count)
    }

    /// Makes every completed write durable (data on the COW device; records are durable already).
    public func flush() async throws { try await store.device.flush() }

    public var status: SnapshotStatus { origin.status(of: self) }
}
