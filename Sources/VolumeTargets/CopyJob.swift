import ExceptionMachinery

/// A run of consecutive origin chunks (of one chunk size) to copy out, and the snapshots that
/// receive it: one origin read, then one write into each snapshot's store.
///
/// Invariant: every target holds one pending exception per chunk of the run, in chunk order,
/// whose store chunks are consecutive (so the run lands in each store with one write); a run
/// is at most `largestRun` bytes or one chunk.
struct CopyJob {
    let geometry: ChunkGeometry
    /// The run's first origin chunk.
    let chunk: ChunkIndex
    private(set) var count = 1
    private(set) var targets: [(snapshot: Snapshot, pending: [PendingException])] = []

    /// The most bytes one job copies when it joins runs of chunks (bounds the copier's buffers).
    static let largestRun = 1 << 20

    /// A job for one chunk; targets are added with `add`.
    init(geometry: ChunkGeometry, chunk: ChunkIndex) {
        self.geometry = geometry
        self.chunk = chunk
    }

    var bytes: Int { count * geometry.chunkBytes }

    /// Adds a snapshot receiving this (single-chunk) job's chunk.
    mutating func add(_ snapshot: Snapshot, _ pending: PendingException) {
        precondition(count == 1, "targets join single-chunk jobs, before runs are formed")
        targets.append((snapshot, [pending]))
    }

    /// Appends `next` if it continues this run for the same snapshots with consecutive store
    /// chunks (see the invariant); returns whether it did. Leaves `self` unchanged if not.
    mutating func absorb(_ next: CopyJob) -> Bool {
        guard next.geometry.shift == geometry.shift, next.chunk == chunk + UInt64(count),
              bytes + next.bytes <= Self.largestRun, next.targets.count == targets.count else { return false }
        for (mine, theirs) in zip(targets, next.targets) {
            guard mine.snapshot === theirs.snapshot, let last = mine.pending.last, let first = theirs.pending.first,
                  first.new == last.new + 1 else { return false }
        }
        for index in targets.indices { targets[index].pending += next.targets[index].pending }
        count += next.count
        return true
    }

    /// Joins jobs of consecutive chunks into runs (a sequential write's copies become one read
    /// and one write per snapshot instead of one per chunk).
    static func runs(of jobs: some Collection<CopyJob>) -> [CopyJob] {
        var runs: [CopyJob] = []
        for job in jobs.sorted(by: { ($0.geometry.shift, $0.chunk) < ($1.geometry.shift, $1.chunk) }) {
            // In place: absorbing into a copy of the last run made its arrays shared, so every
            // chunk copied the run's pending exceptions so far (quadratic in the run's length).
            if runs.isEmpty || !runs[runs.count - 1].absorb(job) { runs.append(job) }
        }
        return runs
    }
}
