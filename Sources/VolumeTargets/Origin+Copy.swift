import BlockDevices
import ExceptionMachinery

/// One origin chunk to copy out, and the snapshots (of that chunk size) that receive it.
struct CopyJob {
    let geometry: ChunkGeometry
    let chunk: ChunkIndex
    var targets: [(snapshot: Snapshot, pending: PendingException)]
}

/// What an origin write must do before it may proceed: copies to start, copies to wait for,
/// snapshots to invalidate.
struct CopyPlan {
    var jobs: [ChunkKey: CopyJob] = [:]
    var waits: [PendingException] = []
    var invalidated: [(Snapshot, String)] = []

    var isEmpty: Bool { jobs.isEmpty && waits.isEmpty && invalidated.isEmpty }
}

extension Origin {
    /// Ensures every snapshot receiving copies holds the current contents of the chunks under
    /// `[offset, offset+length)` before they change: starts the copies that are missing and
    /// waits for those already pending, until none is left.
    func preserve(offset: UInt64, length: Int, skipping skipped: Snapshot? = nil) async {
        while true {
            let plan = state.withLock { Self.planCopies(&$0, offset: offset, length: length, skipping: skipped) }
            if plan.isEmpty { return }
            for (snapshot, reason) in plan.invalidated { await announceInvalid(snapshot, reason: reason) }
            await runCopies(Array(plan.jobs.values))
            for pending in plan.waits { _ = await pending.wait() }
        }
    }

    /// Under the lock: creates pending exceptions for chunks that lack one and groups them so
    /// that snapshots of one chunk size share one origin read.
    static func planCopies(_ state: inout OriginState, offset: UInt64, length: Int, skipping skipped: Snapshot?) -> CopyPlan {
        var plan = CopyPlan()
        for snapshot in state.members where snapshot !== skipped {
            let id = ObjectIdentifier(snapshot)
            guard var tables = state.tables[id], tables.receivesCopies,
                  let chunks = tables.geometry.chunks(offset: offset, length: length) else { continue }
            for chunk in chunks {
                switch tables.exceptions.lookup(chunk) {
                case .completed: continue
                case .pending(let pending):
                    plan.waits.append(pending)
                    continue
                case .absent: break
                }
                guard let pending = try? tables.exceptions.begin(chunk, in: snapshot.store) else {
                    state.tables[id] = tables
                    let reason = snapshot.store.isValid ? "COW store full" : "COW store invalid"
                    if markInvalid(&state, snapshot, reason: reason) { plan.invalidated.append((snapshot, reason)) }
                    tables = state.tables[id]!
                    break
                }
                let key = ChunkKey(shift: tables.geometry.shift, chunk: chunk)
                plan.jobs[key, default: CopyJob(geometry: tables.geometry, chunk: chunk, targets: [])]
                    .targets.append((snapshot, pending))
            }
            state.tables[id] = tables
        }
        return plan
    }

    func runCopies(_ jobs: [CopyJob]) async {
        if jobs.count == 1 { return await runCopy(jobs[0]) }
        await withTaskGroup(of: Void.self) { group in
            for job in jobs { group.addTask { await self.runCopy(job) } }
        }
    }

    /// Reads the origin chunk once, writes it into every target's store, commits each target.
    func runCopy(_ job: CopyJob) async {
        let offset = job.geometry.offset(of: job.chunk)
        let length = Int(min(UInt64(job.geometry.chunkBytes), size - offset))
        let destinations = job.targets.map {
            CopyDestination(device: $0.snapshot.store.device, offset: $0.snapshot.store.geometry.offset(of: $0.pending.new))
        }
        let targets = job.targets
        await copier.copy(from: device, at: offset, length: length, to: destinations) { index, error in
            await self.finish(targets[index].snapshot, targets[index].pending, copyError: error)
        }
    }

    /// Commits a copied exception (or gives it up after a failed copy) and wakes its waiters.
    func finish(_ snapshot: Snapshot, _ pending: PendingException, copyError: (any Error)?) async {
        var failure: String?
        if let copyError {
            failure = "copy failed: \(copyError)"
            await snapshot.store.abandonException(new: pending.new)
        } else {
            do {
                try await snapshot.store.commitException(old: pending.old, new: pending.new)
            } catch {
                failure = "metadata commit failed: \(error)"
            }
        }
        if let failure { await invalidate(snapshot, reason: failure) }
        complete(snapshot, pending, committed: failure == nil)
    }

    /// Moves `pending` into the completed table (if committed) and signals its waiters.
    func complete(_ snapshot: Snapshot, _ pending: PendingException, committed: Bool) {
        state.withLock { state in
            let id = ObjectIdentifier(snapshot)
            guard var tables = state.tables[id] else { return }
            tables.exceptions.end(pending, committed: committed, keep: tables.receivesCopies || tables.condition == .merging)
            state.tables[id] = tables
        }
        pending.completion.signal(committed)
    }
}
