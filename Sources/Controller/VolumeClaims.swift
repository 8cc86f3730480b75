import Synchronization
import VolumeTargets

/// The volumes that clients outside the controller hold open (NBD sessions), so that a command
/// removing a volume is refused while it is in use, as `dmsetup remove` refuses a busy device,
/// or cuts its clients off when forced.
///
/// Invariants: a volume being removed (between `beginRemoval` and `endRemoval`) takes no new
/// claim; a claim is counted until it is released, and releasing it twice is harmless.
public final class VolumeClaims: Sendable {
    private struct Holder {
        let volume: String
        let disconnect: @Sendable () -> Void
    }

    private struct State {
        var next: UInt64 = 0
        var holders: [UInt64: Holder] = [:]
        var removing: [String: Int] = [:]
    }

    private let state = Mutex(State())

    public init() {}

    /// Claims `volume` for a client; nil while it is being removed. `disconnect` ends that
    /// client's use of it (called when a removal is forced). The returned closure releases it.
    public func claim(_ volume: String, disconnect: @escaping @Sendable () -> Void) -> (@Sendable () -> Void)? {
        let id: UInt64? = state.withLock { state in
            guard state.removing[volume] == nil else { return nil }
            defer { state.next += 1 }
            state.holders[state.next] = Holder(volume: volume, disconnect: disconnect)
            return state.next
        }
        guard let id else { return nil }
        return { [self] in _ = state.withLock { $0.holders.removeValue(forKey: id) } }
    }

    /// "1 NBD client", "3 NBD clients": how messages and screens count clients.
    public static func describe(_ clients: Int) -> String { Wording.counted(clients, "NBD client") }

    /// How many clients hold `volume`.
    public func clients(of volume: String) -> Int {
        state.withLock { state in state.holders.values.count { $0.volume == volume } }
    }

    /// Starts removing `volumes`: refused while a client holds one of them, unless `force`, which
    /// disconnects those clients instead. Returns how many were disconnected. From here until
    /// `endRemoval`, the volumes take no new claim.
    func beginRemoval(of volumes: [String], force: Bool) throws -> Int {
        let evicted: [Holder] = try state.withLock { state in
            let held = state.holders.filter { volumes.contains($0.value.volume) }
            if !held.isEmpty && !force {
                let busy = volumes.first { name in held.values.contains { $0.volume == name } }!
                throw ControllerError.volumeInUse(name: busy, clients: held.values.count { $0.volume == busy })
            }
            for volume in volumes { state.removing[volume, default: 0] += 1 }
            for id in held.keys { state.holders[id] = nil }
            return Array(held.values)
        }
        for holder in evicted { holder.disconnect() }
        return evicted.count
    }

    /// Ends a removal begun by `beginRemoval`, done or failed.
    func endRemoval(of volumes: [String]) {
        state.withLock { state in
            for volume in volumes {
                let left = (state.removing[volume] ?? 1) - 1
                state.removing[volume] = left > 0 ? left : nil
            }
        }
    }
}

extension Controller {
    /// Opens the volume called `name` for a client: nil if there is none, it is inactive, or it
    /// is being removed. `disconnect` ends the client's use of it (a forced removal calls it);
    /// until the lease is released, removing the volume is refused or disconnects the client.
    public func open(volumeNamed name: String, disconnect: @escaping @Sendable () -> Void) -> VolumeLease? {
        guard let release = claims.claim(name, disconnect: disconnect) else { return nil }
        guard let volume = try? volume(named: name) else {
            release()
            return nil
        }
        return VolumeLease(volume: volume, release: release)
    }

    /// Runs `body` once no client holds any of `volumes` (refused otherwise, unless `force`,
    /// which disconnects them first); the volumes take no new client meanwhile.
    func removing<T>(_ volumes: [String], force: Bool, _ body: () async throws -> T) async throws -> T {
        let evicted = try claims.beginRemoval(of: volumes, force: force)
        defer { claims.endRemoval(of: volumes) }
        if evicted > 0 {
            events.record("\(volumes.joined(separator: ", ")): \(VolumeClaims.describe(evicted)) disconnected (--force)")
        }
        return try await body()
    }
}
