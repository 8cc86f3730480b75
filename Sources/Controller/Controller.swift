import AsyncPrimitives
import BlockDevices
import ExceptionMachinery
import Foundation
import Synchronization
import VolumeTargets

/// The one API the CLI, the NBD server and the TUI drive: owns a pool (its lock), activates
/// its volumes (metadata loaded first, then snapshots joined: resume), runs commands, and
/// publishes the status model.
///
/// Invariants: the registry on disk always describes what exists (it is rewritten atomically
/// after each change that creates something and before each change that destroys something);
/// commands run one at a time; a refused command changes nothing on disk.
public final class Controller: Sendable {
    public let location: PoolLocation
    private let lock: PoolLock
    let state: Mutex<ControllerState>
    let commandSlot = AsyncSemaphore(limit: 1)
    /// What happened to the pool's volumes, kept in its `events.log` across processes.
    public let events: EventJournal
    /// The volumes clients hold open (NBD sessions); removing one is refused while held.
    public let claims = VolumeClaims()
    /// Serializes writes of the registry file: commands (one at a time) and a guarded origin's
    /// first write, which marks snapshots stale without waiting for a command to end.
    private let registryWrites = Mutex(())

    private init(location: PoolLocation, lock: PoolLock, registry: Registry) {
        self.location = location
        self.lock = lock
        events = EventJournal(log: EventLog(path: location.eventsPath))
        state = Mutex(ControllerState(registry: registry))
    }

    /// Creates an empty pool directory (mode 0700) with an empty registry; refuses an existing one.
    public static func initPool(_ location: PoolLocation) throws {
        if location.exists { throw ControllerError.poolExists(location.directory) }
        do {
            try FileManager.default.createDirectory(atPath: location.directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw ControllerError.refused("cannot create pool directory \(location.directory): \(Self.systemReason(error))")
        }
        let lock = try PoolLock.acquire(location, purpose: "snapvol pool init")
        if location.exists { throw ControllerError.poolExists(location.directory) }
        try RegistryFile.save(Registry(), to: location)
        withExtendedLifetime(lock) {}
    }

    /// The errno text (strerror) under a Foundation file error, which otherwise reads "The
    /// operation could not be completed. You don't have permission."
    static func systemReason(_ error: any Error) -> String {
        var current = error as NSError
        while current.domain != NSPOSIXErrorDomain, let underlying = current.userInfo[NSUnderlyingErrorKey] as? any Error {
            current = underlying as NSError
        }
        return current.domain == NSPOSIXErrorDomain ? String(cString: strerror(Int32(current.code))) : error.localizedDescription
    }

    /// Takes the pool's lock, loads its registry and activates every volume.
    public static func open(_ location: PoolLocation, purpose: String) async throws -> Controller {
        try location.requireAccess()
        guard location.exists else { throw ControllerError.noPool(location.directory) }
        let lock = try PoolLock.acquire(location, purpose: purpose)
        let registry = try RegistryFile.load(location)
        let controller = Controller(location: location, lock: lock, registry: registry)
        for origin in registry.origins { await controller.activate(origin) }
        for remap in registry.remaps { await controller.activate(remap) }
        return controller
    }

    /// Flushes every active volume, then retires each origin (its I/O refused from then on),
    /// detaches its snapshots (an origin and its snapshots hold each other until detached) and
    /// lets go of them all, waiting for their descriptors to close with their image locks: the
    /// pool's devices can be opened again at once, in this process too. The pool's lock is
    /// released when the controller goes away.
    public func close() async {
        await retireVolumes()
        await releaseVolumes()
    }

    /// Flushes every active volume, retires its origins, detaches their snapshots and records
    /// the origins' stamps; the volumes stay in the state (and alive) for `releaseVolumes`.
    private func retireVolumes() async {
        let (live, remaps) = state.withLock { state in (Array(state.live.values), Array(state.remaps.values)) }
        for remap in remaps { try? await remap.flush() }
        for snapshot in live.flatMap(\.snapshots.values) { try? await snapshot.flush() }
        for origin in live.compactMap(\.origin) { try? await origin.flush() }
        var exceptionCounts: [String: Int] = [:]
        for entry in live {
            guard let origin = entry.origin else { continue }
            await origin.retire()
            for (name, snapshot) in entry.snapshots {
                // Retired, the origin starts no more copies: the count is final.
                let status = snapshot.status
                if status.persistent, status.condition == .active || status.condition == .overflow { exceptionCounts[name] = status.exceptions }
                await origin.detach(snapshot)
            }
        }
        // Retired, an origin has every write it admitted on its device and admits no more (a
        // command cut off at a server's stop may still try): its stamp is final.
        await recordStamps(of: live.compactMap(\.origin), exceptionCounts: exceptionCounts)
    }

    /// Lets go of every volume, so that its descriptors close now rather than when the last
    /// reference to the controller goes, and waits for them (a task that finished its last I/O
    /// may hold its volume a moment longer): once `close` returns, the pool's devices can be
    /// opened again, by this process or another, without meeting this one's image locks. A
    /// volume a client still holds keeps its device until the client lets go; the wait ends
    /// after two seconds, and says so. The volumes read as inactive from then on: "the pool is
    /// closed".
    private func releaseVolumes() async {
        let released = state.withLock { state in
            var released = ReleasedDevices()
            for (name, entry) in state.live {
                released.add(entry)
                state.live[name] = entry.closed(because: Self.closedReason)
            }
            for (name, remap) in state.remaps {
                released.add(remap)
                state.remapProblems[name] = Self.closedReason
            }
            state.remaps = [:]
            return released
        }
        if await !released.waitUntilClosed(limit: .seconds(2)) {
            events.record("closing: a client still holds a volume; its device closes when the client lets go")
        }
    }

    static let closedReason = "the pool is closed"

    public var registry: Registry { state.withLock { $0.registry } }

    /// Runs one command at a time.
    func command<T>(_ body: () async throws -> T) async throws -> T {
        await commandSlot.acquire()
        defer { commandSlot.release() }
        return try await body()
    }

    /// Saves `registry` (a command's edited copy), keeping the marks made since the command
    /// copied it (`Registry.keepingMarks`): a stale mark is never undone except by deleting its
    /// snapshot, a suspect mark only by `snapshot trust`, a cleared stamp only at `close`.
    func save(_ registry: Registry) throws {
        try editRegistry { current in current = registry.keepingMarks(of: current) }
    }

    /// Edits the registry in place and saves it (if the edit changed it), under `registryWrites`;
    /// once saved, `apply` changes the live state to match, under the same state lock that
    /// publishes the new registry.
    func editRegistry(_ edit: (inout Registry) throws -> Void, apply: (inout ControllerState) -> Void = { _ in }) throws {
        try registryWrites.withLock { _ in
            let current = state.withLock { $0.registry }
            var registry = current
            try edit(&registry)
            if registry == current { return }
            try RegistryFile.save(registry, to: location)
            state.withLock { state in
                state.registry = registry
                apply(&state)
            }
        }
    }

    // MARK: volumes

    /// The active volume called `name` (origin or snapshot).
    public func volume(named name: String) throws -> any Volume {
        try state.withLock { state in
            if let remap = state.remaps[name] { return remap }
            if let problem = state.remapProblems[name] { throw ControllerError.inactiveVolume(name: name, reason: problem) }
            for (originName, live) in state.live {
                if originName == name {
                    guard let volume = live.volume else { throw ControllerError.inactiveVolume(name: name, reason: live.problem ?? "unknown") }
                    return volume
                }
                if let snapshot = live.snapshots[name] { return snapshot }
                if let problem = live.snapshotProblems[name] { throw ControllerError.inactiveVolume(name: name, reason: problem.reason) }
            }
            throw ControllerError.unknownVolume(name)
        }
    }

    /// Every exportable volume name, origins first, in registry order.
    public var volumeNames: [String] { registry.allNames }
}

/// What the controller has activated, next to the registry that describes it.
struct ControllerState {
    var registry: Registry
    var live: [String: LiveOrigin] = [:]
    var remaps: [String: RemapVolume] = [:]
    /// Remap volumes that could not be activated, and why.
    var remapProblems: [String: String] = [:]
}

/// An origin as activated in this process.
struct LiveOrigin {
    var origin: Origin?
    /// Why the origin could not be activated.
    var problem: String?
    var snapshots: [String: Snapshot] = [:]
    /// Snapshots that could not be activated, and why (state `inactive` or `invalid`).
    var snapshotProblems: [String: (state: String, reason: String)] = [:]
    /// What front ends write through while some snapshots are `inactive` (see `GuardedOrigin`).
    var guarded: GuardedOrigin?

    /// The volume front ends get for the origin: guarded while a snapshot could not be activated.
    var volume: (any Volume)? { guarded ?? origin }

    /// This origin once its controller has let go of it: its volumes inactive for `reason`.
    func closed(because reason: String) -> LiveOrigin {
        var closed = LiveOrigin(origin: nil, problem: problem ?? reason, snapshotProblems: snapshotProblems)
        for name in snapshots.keys { closed.snapshotProblems[name] = ("inactive", reason) }
        return closed
    }
}
