import BlockDevices
import ExceptionMachinery
import VolumeTargets

extension Controller {
    /// When some of `origin`'s snapshots could not be activated, or its file carries a closed
    /// stamp, front ends get the origin behind a `GuardedOrigin`: its first write gives those
    /// snapshots up and clears the stamp first.
    func guardFirstWrite(_ origin: Origin) {
        state.withLock { state in
            guard let live = state.live[origin.name], live.origin === origin else { return }
            let missing = live.snapshotProblems.contains { $0.value.state == "inactive" }
            let stamped = state.registry.origin(named: origin.name)?.closedStamp != nil
            state.live[origin.name]?.guarded = missing || stamped ? GuardedOrigin(origin) { [weak self] in
                try self?.prepareFirstWrite(of: origin)
            } : nil
        }
    }

    /// Before an origin's first write, in one registry save that the write waits for: its closed
    /// stamp is cleared (a crash from now on leaves no stamp to judge the file by, rather than
    /// an old one), and each snapshot still inactive is marked stale and shown invalid from now
    /// on. Not a command: a write must not wait for one (a merge of another origin runs for
    /// minutes); `save` keeps the marks when a command saves its copy of the registry.
    ///
    /// If the registry cannot be saved (its file system full), the write fails only when a
    /// snapshot had to be given up first; a stamp left uncleared costs at most a false alarm
    /// after a crash, which the event says, and never the origin's availability.
    func prepareFirstWrite(of origin: Origin) throws {
        var given: [(name: String, reason: String)] = []
        do {
            try markFirstWrite(of: origin, given: &given)
        } catch where given.isEmpty {
            events.record("\(origin.name): could not record that snapvol writes it (\(error)): if snapvol stops without letting it go, its snapshots will be marked suspect")
        }
        for (name, reason) in given { events.record("\(name): INVALIDATED (\(reason))", alarm: true) }
    }

    /// The registry edit of `prepareFirstWrite`; `given` holds the snapshots it gives up, even
    /// when the save then fails.
    private func markFirstWrite(of origin: Origin, given: inout [(name: String, reason: String)]) throws {
        // The origin's name is read under the registry's lock, which a rename holds.
        try editRegistry { registry in
            let originName = origin.name
            let inactive = state.withLock { $0.live[originName]?.snapshotProblems.filter { $0.value.state == "inactive" } } ?? [:]
            guard let index = registry.origins.firstIndex(where: { $0.name == originName }) else { return }
            registry.origins[index].closedStamp = nil
            for (position, record) in registry.origins[index].snapshots.enumerated() {
                guard let problem = inactive[record.name], record.staleReason == nil else { continue }
                let reason = "its origin was written while its COW could not be opened (\(problem.reason))"
                registry.origins[index].snapshots[position].staleReason = reason
                given.append((record.name, reason))
            }
        } apply: { state in
            for (name, reason) in given { state.live[origin.name]?.snapshotProblems[name] = ("invalid", reason) }
        }
    }

    /// A snapshot given up earlier: invalid, and its COW, if it can be opened now (and is no
    /// other device found under its path), marked invalid on disk too (as the kernel would read
    /// it). It never joins its origin.
    func giveUp(_ record: SnapshotRecord, of origin: Origin, _ reason: String) async {
        if record.persistent, let device = try? FileBlockDevice.open(path: record.cowPath).lockedAsSoleWriter(),
           Self.otherDevice(device, at: record.cowPath, recorded: record.cowIdentity, owner: "") == nil,
           let store = try? await PersistentExceptionStore.open(device, requiredChunkBytes: record.chunkSize) {
            await store.invalidate()
        }
        state.withLock { $0.live[origin.name]?.snapshotProblems[record.name] = ("invalid", reason) }
    }
}
