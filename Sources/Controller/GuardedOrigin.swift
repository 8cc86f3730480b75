import AsyncPrimitives
import Synchronization
import VolumeTargets

/// An origin some of whose snapshots could not be activated (a COW missing, a device not yet
/// attached), or whose file carries a closed stamp: before its first write, discard or zeroing,
/// `barrier` gives those snapshots up (marks them stale in the registry), so that when their COW
/// comes back they are invalid instead of silently showing the origin's newer data, and clears
/// the stamp (see `Controller.checkStamp`). LVM refuses to activate an origin with a snapshot
/// missing; snapvol keeps it writable and gives up the snapshots it cannot keep.
///
/// Invariant: no write, discard or zeroing reaches the origin before the barrier has passed once;
/// reads go straight through.
final class GuardedOrigin: Volume {
    let origin: Origin
    private let barrier: WriteBarrier

    init(_ origin: Origin, beforeFirstWrite: @escaping @Sendable () async throws -> Void) {
        self.origin = origin
        barrier = WriteBarrier(beforeFirstWrite)
    }

    var name: String { origin.name }
    var size: UInt64 { origin.size }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) async throws {
        try await origin.read(into: buffer, at: offset)
    }

    func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) async throws {
        try await barrier.pass()
        try await origin.write(buffer, at: offset)
    }

    func readImmediately(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Bool {
        try origin.readImmediately(into: buffer, at: offset)
    }

    /// At once only after the barrier has passed (the usual case after the first write).
    func writeImmediately(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws -> Bool {
        guard barrier.hasPassed else { return false }
        return try origin.writeImmediately(buffer, at: offset)
    }

    func flush() async throws { try await origin.flush() }

    func dataMap(offset: UInt64, length: UInt64) async throws -> RangeMap {
        try await origin.dataMap(offset: offset, length: length)
    }

    func discard(offset: UInt64, length: UInt64) async throws -> UInt64 {
        try await barrier.pass()
        return try await origin.discard(offset: offset, length: length)
    }

    func writeZeroes(offset: UInt64, length: UInt64, mayDeallocate: Bool) async throws -> UInt64 {
        try await barrier.pass()
        return try await origin.writeZeroes(offset: offset, length: length, mayDeallocate: mayDeallocate)
    }
}

/// Runs an action once before anything passes: the first caller runs it, callers meanwhile wait
/// for it; once it succeeded everyone passes at once. If it fails, the callers that waited fail
/// with it and the next caller runs it again.
final class WriteBarrier: Sendable {
    private enum Phase {
        case closed
        case opening(OneShotEvent<Bool>)
        case open
    }

    private let phase = Mutex(Phase.closed)
    /// Set once the action succeeded: from then on a write passes with one atomic load, no lock.
    private let isOpen = Atomic(false)
    private let action: @Sendable () async throws -> Void

    init(_ action: @escaping @Sendable () async throws -> Void) { self.action = action }

    /// Whether the action has succeeded: everything passes at once from then on.
    var hasPassed: Bool { isOpen.load(ordering: .acquiring) }

    func pass() async throws {
        if isOpen.load(ordering: .acquiring) { return }
        let (event, runs) = phase.withLock { phase -> (OneShotEvent<Bool>?, Bool) in
            switch phase {
            case .open: return (nil, false)
            case .opening(let event): return (event, false)
            case .closed:
                let event = OneShotEvent<Bool>()
                phase = .opening(event)
                return (event, true)
            }
        }
        guard let event else { return }
        guard runs else {
            if await event.wait() { return }
            throw ControllerError.refused("the origin's write barrier failed: see the first write's error")
        }
        do {
            try await action()
        } catch {
            phase.withLock { $0 = .closed }
            _ = event.signal(false)
            throw error
        }
        phase.withLock { $0 = .open }
        isOpen.store(true, ordering: .releasing)
        _ = event.signal(true)
    }
}
