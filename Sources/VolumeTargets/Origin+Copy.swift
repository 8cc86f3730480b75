import BlockDevices
import ExceptionMachinery

/// What one write's `resolve` calls found, per snapshot and chunk.
typealias ResolvedChunks = [ObjectIdentifier: [ChunkIndex: ExceptionCache.Resolution]]

/// A chunk of the origin at one chunk size: the unit in which copies are shared between
/// snapshots.
struct ChunkKey: Hashable {
    let shift: Int
    let chunk: UInt64
}

/// What an origin write must do before it may proceed: copies to start, copies to wait for,
/// snapshots to invalidate.
struct CopyPlan {
    /// One single-chunk job per chunk, in the order they were planned.
    var jobs: [CopyJob] = []
    /// Where each chunk's job is in `jobs`. An index, not a dictionary of jobs updated in
    /// place: a dictionary's `modify` allocates its coroutine frames, for every chunk copied.
    var jobIndex: [ChunkKey: Int] = [:]
    var waits: [PendingException] = []
    var invalidated: [(Snapshot, String)] = []
    /// Chunks whose exception must be read back from a metadata area before deciding.
    var loads: [(Snapshot, ChunkIndex)] = []

    var isEmpty: Bool { jobs.isEmpty && waits.isEmpty && invalidated.isEmpty && loads.isEmpty }

    /// Adds `snapshot` to the job copying `chunk`, creating the job if it is the first.
    mutating func addJob(for chunk: ChunkIndex, of geometry: ChunkGeometry, to snapshot: Snapshot, _ pending: PendingException) {
        let key = ChunkKey(shift: geometry.shift, chunk: chunk)
        let index = jobIndex[key] ?? jobs.count
        if index == jobs.count {
            jobIndex[key] = index
            jobs.append(CopyJob(geometry: geometry, chunk: chunk))
        }
        jobs[index].add(snapshot, pending)
    }
}

extension Origin {
    /// Ensures every snapshot receiving copies holds the current contents of the chunks under
    /// `[offset, offset+length)` before they change: starts the copies that are missing and
    /// waits for those already pending, until none is left.
    func preserve(offset: UInt64, length: Int, skipping skipped: Snapshot? = nil) async {
        var resolved: ResolvedChunks = [:]
        while true {
            let plan = state.withLock { Self.planCopies(&$0, offset: offset, length: length, skipping: skipped, resolved: resolved) }
            if plan.isEmpty { return }
            for (snapshot, reason) in plan.invalidated { await announceInvalid(snapshot, reason: reason) }
            await runCopies(CopyJob.runs(of: plan.jobs))
            for pending in plan.waits { _ = await pending.wait() }
            for (snapshot, chunk) in plan.loads {
                resolved[ObjectIdentifier(snapshot), default: [:]][chunk] = await resolveForWrite(snapshot, chunk)
            }
        }
    }

    /// Under the lock: creates pending exceptions for chunks that lack one and groups them so
    /// that snapshots of one chunk size share one origin read.
    static func planCopies(_ state: inout OriginState, offset: UInt64, length: Int, skipping skipped: Snapshot?,
                           resolved: ResolvedChunks = [:]) -> CopyPlan {
        var plan = CopyPlan()
        for snapshot in state.members where snapshot !== skipped {
            let id = ObjectIdentifier(snapshot)
            // In place: a copy of the tables would copy the whole pending dictionary on every write.
            let refused = state.tables.withTables(id) { tables -> Bool in
                guard tables.receivesCopies, let chunks = tables.geometry.chunks(offset: offset, length: length) else { return false }
                for chunk in chunks {
                    switch tables.claim(chunk, in: snapshot.store, resolved: resolved[id]?[chunk]) {
                    case .held: continue
                    case .unloaded: plan.loads.append((snapshot, chunk))
                    case .wait(let pending): plan.waits.append(pending)
                    case .copy(let pending):
                        plan.addJob(for: chunk, of: tables.geometry, to: snapshot, pending)
                    case .storeRefused: return true
                    }
                }
                return false
            }
            if refused == true {
                // While I/O runs a store turns invalid only when a copy into it or one of its
                // metadata writes failed; the snapshot's own reason may not be recorded yet.
                let reason = snapshot.store.isValid ? "COW store full" : "COW store invalidated after a failed copy or metadata write"
                if markInvalid(&state, snapshot, reason: reason) { plan.invalidated.append((snapshot, reason)) }
            }
        }
        return plan
    }

    /// Under the lock: whether a write to the range would have to copy (or wait for a copy).
    static func needsCopies(_ state: inout OriginState, offset: UInt64, length: Int) -> Bool {
        for snapshot in state.members {
            let copies = state.tables.withTables(ObjectIdentifier(snapshot)) { tables -> Bool in
                guard tables.receivesCopies, let chunks = tables.geometry.chunks(offset: offset, length: length) else { return false }
                return chunks.contains { chunk in
                    guard case .completed = tables.exceptions.lookup(chunk) else { return true }
                    return false
                }
            }
            if copies == true { return true }
        }
        return false
    }

    func runCopies(_ jobs: [CopyJob]) async {
        if jobs.count == 1 { return await runCopy(jobs[0]) }
        await withTaskGroup(of: Void.self) { group in
            for job in jobs { group.addTask { await self.runCopy(job) } }
        }
    }

    /// Reads the job's origin chunks once, writes them into every target's store (one write
    /// each), commits each target's exceptions.
    func runCopy(_ job: CopyJob) async {
        let offset = job.geometry.offset(of: job.chunk)
        let length = Int(min(UInt64(job.bytes), size - offset))
        let destinations = job.targets.map {
            CopyDestination(device: $0.snapshot.store.device, offset: job.geometry.offset(of: $0.pending[0].new))
        }
        let targets = job.targets
        await copier.copy(from: device, at: offset, length: length, to: destinations) { index, error in
            await self.finish(targets[index].snapshot, targets[index].pending, copyError: error)
        }
    }

    /// Commits a copied exception (or gives it up after a failed copy) and wakes its waiters.
    func finish(_ snapshot: Snapshot, _ pending: PendingException, copyError: (any Error)?) async {
        await finish(snapshot, [pending], copyError: copyError)
    }

    /// Commits a run's copied exceptions together, so one group commit serves them (or gives
    /// them up after a failed copy), and wakes their waiters.
    func finish(_ snapshot: Snapshot, _ pendings: [PendingException], copyError: (any Error)?) async {
        var committed = false
        if let copyError {
            // The snapshot carries the reason before the store turns invalid: a write planning
            // copies meanwhile then skips it instead of finding the store refusing.
            await invalidate(snapshot, reason: "copy failed: \(copyError)")
            for pending in pendings { await snapshot.store.abandonException(new: pending.new) }
        } else {
            do {
                try await snapshot.store.commitExceptions(pendings.map { DiskException(old: $0.old, new: $0.new) })
                committed = true
            } catch {
                await invalidate(snapshot, reason: "metadata commit failed: \(error)")
            }
        }
        complete(snapshot, pendings, committed: committed)
    }

    /// Moves `pendings` into the completed table (if committed) and signals their waiters.
    func complete(_ snapshot: Snapshot, _ pendings: [PendingException], committed: Bool) {
        state.withLock { state in
            state.tables.withTables(ObjectIdentifier(snapshot)) { tables in
                let keep = tables.condition == .active || tables.condition == .overflow || tables.condition == .merging
                for pending in pendings { tables.exceptions.end(pending, committed: committed, keep: keep) }
            }
        }
        for pending in pendings { pending.completion.signal(committed) }
    }
}
