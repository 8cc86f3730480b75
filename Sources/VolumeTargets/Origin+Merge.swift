import AsyncPrimitives
import BlockDevices
import ExceptionMachinery

/// A merge in progress: the snapshot being rolled into its origin, and the runs of chunks the
/// current step is copying back (origin I/O to those chunks waits for the step).
/// Invariant: the busy runs are sorted and disjoint (a step's runs are distinct records).
struct MergeState {
    let snapshot: Snapshot
    var busy: (runs: [Range<ChunkIndex>], done: OneShotEvent<Void>)?

    init(snapshot: Snapshot) { self.snapshot = snapshot }

    mutating func beginStep(_ runs: [Range<ChunkIndex>], done: OneShotEvent<Void>) {
        busy = (runs.sorted { $0.lowerBound < $1.lowerBound }, done)
    }

    /// The event to wait for when `chunk` is being copied back, else nil.
    func busyEvent(for chunk: ChunkIndex) -> OneShotEvent<Void>? {
        guard let busy else { return nil }
        // The last run starting at or before `chunk` is the only one that can hold it.
        var low = 0, high = busy.runs.count
        while low < high {
            let mid = (low + high) / 2
            if busy.runs[mid].lowerBound <= chunk { low = mid + 1 } else { high = mid }
        }
        return low > 0 && busy.runs[low - 1].contains(chunk) ? busy.done : nil
    }
}

/// How much one merge step copies back before its one origin flush and one metadata write.
public enum MergeStep {
    /// 16 MiB, from as many runs and metadata areas as that takes.
    public static let defaultBytes = 16 << 20
    /// Runs of one step copied back at the same time.
    static let copiesInFlight = 8
}

/// Where one chunk of an origin I/O goes while a merge runs.
enum MergeViewRoute {
    case wait(OneShotEvent<Void>)
    case store(ChunkIndex)
    case origin
}

extension Origin {
    /// Rolls the origin back to `snapshot`'s content and consumes the snapshot (dm's
    /// snapshot-merge). Records are merged newest first, in runs; before each run is copied back,
    /// every other snapshot receives its own copy of the chunks about to change. A step copies
    /// back up to `stepBytes` of runs, from as many metadata areas as that takes, then flushes the
    /// origin and forgets their records with one metadata write. From the start, the origin
    /// reads and writes as the merged result. Each step is durable, so a merge interrupted by a
    /// crash resumes by calling `merge` again on the re-attached snapshot.
    /// - Parameter stepBytes: how much a step copies back (at least one chunk).
    public func merge(_ snapshot: Snapshot, stepBytes: Int = MergeStep.defaultBytes) async throws {
        guard snapshot.store.isPersistent else {
            throw VolumeError.refused(volume: snapshot.name, reason: "a transient snapshot cannot be merged")
        }
        let total = try await beginMerge(snapshot)
        do {
            let limit = max(1, stepBytes / snapshot.geometry.chunkBytes)
            while true {
                let runs = try await snapshot.store.prepareMerge(limit: limit)
                if runs.isEmpty { break }
                try await mergeStep(snapshot, runs)
                let remaining = state.withLock { $0.tables[ObjectIdentifier(snapshot)]?.exceptions.completed.count ?? 0 }
                onEvent(.mergeProgress(snapshot: snapshot.name, remainingExceptions: remaining, totalExceptions: total))
            }
        } catch {
            let reason = "\(error)"
            state.withLock { state in
                state.tables[ObjectIdentifier(snapshot)]?.condition = .mergeFailed(reason: reason)
                state.merge?.busy?.done.signal()
                state.merge?.busy = nil
            }
            onEvent(.mergeFailed(snapshot: snapshot.name, reason: reason))
            throw error
        }
        await withGateClosed {
            state.withLock { state in
                state.merge = nil
                state.members.removeAll { $0 === snapshot }
                state.tables[ObjectIdentifier(snapshot)] = nil
            }
        }
        onEvent(.mergeFinished(snapshot: snapshot.name))
    }

    /// Switches the origin to the merge view without copying anything yet: used when a snapshot
    /// that was merging is re-attached after a restart, so the origin never shows the unmerged
    /// content. Running `merge` later finishes the job. Returns the exceptions left to merge.
    @discardableResult
    public func beginMerge(_ snapshot: Snapshot) async throws -> Int {
        try await withGateClosed {
            try await loadWholeTable(snapshot)
            return try state.withLock { state in
                let id = ObjectIdentifier(snapshot)
                if let other = state.merge?.snapshot, other !== snapshot {
                    throw VolumeError.refused(volume: snapshot.name, reason: "origin \(name) is already merging \(other.name)")
                }
                guard var tables = state.tables[id] else { throw VolumeError.inactive(volume: snapshot.name) }
                if case .invalid(let reason) = tables.condition { throw VolumeError.invalid(volume: snapshot.name, reason: reason) }
                tables.condition = .merging
                state.tables[id] = tables
                state.merge = MergeState(snapshot: snapshot)
                return tables.exceptions.completed.count
            }
        }
    }

    /// Copies runs back: mark them busy, give other snapshots their copies, copy, flush, commit.
    private func mergeStep(_ snapshot: Snapshot, _ runs: [MergeRun]) async throws {
        let chunks = runs.map { $0.old..<($0.old + UInt64($0.count)) }
        let done = OneShotEvent<Void>()
        await withGateClosed { state.withLock { $0.merge?.beginStep(chunks, done: done) } }
        prefetchCopies(of: runs, from: snapshot)
        try await withThrowingTaskGroup(of: Void.self) { group in
            // Runs are distinct chunks: several copies overlap (a step of scattered chunks is
            // thousands of small ones); the copier bounds their buffers.
            for (index, run) in runs.enumerated() {
                if index >= MergeStep.copiesInFlight { try await group.next() }
                group.addTask { try await self.copyBack(run, of: snapshot) }
            }
            try await group.waitForAll()
        }
        try await device.flush()
        try await snapshot.store.commitMerge(count: runs.reduce(0) { $0 + $1.count })
        state.withLock { state in
            state.tables.withTables(ObjectIdentifier(snapshot)) { tables in
                for chunk in chunks.joined() { tables.exceptions.completed.remove(old: chunk) }
            }
            state.merge?.busy = nil
        }
        done.signal()
    }

    /// Asks the COW device to read a step's copies in ahead. A step's runs are the store's
    /// newest records, so they lie together on the device; read one run at a time, newest
    /// first, a step of scattered 4 KiB chunks that were not in the page cache read at 35-41
    /// MiB/s, and at 192-240 MiB/s prefetched (Docs/PERFORMANCE-HISTORY.md, session 9).
    private func prefetchCopies(of runs: [MergeRun], from snapshot: Snapshot) {
        guard var first = runs.first?.new else { return }
        var end = first
        for run in runs {
            first = min(first, run.new)
            end = max(end, run.new + UInt64(run.count))
        }
        let geometry = snapshot.geometry
        snapshot.store.device.prefetch(offset: geometry.offset(of: first), length: Int(end - first) * geometry.chunkBytes)
    }

    /// Copies one run from the store to the origin, once the other snapshots kept their copies.
    private func copyBack(_ run: MergeRun, of snapshot: Snapshot) async throws {
        let geometry = snapshot.geometry
        let offset = geometry.offset(of: run.old)
        guard offset < size else {
            throw VolumeError.refused(volume: snapshot.name, reason: "exception for chunk \(run.old) lies beyond the origin")
        }
        let length = Int(min(UInt64(run.count * geometry.chunkBytes), size - offset))
        await preserve(offset: offset, length: length, skipping: snapshot)
        await waitForSnapshotReads(offset: offset, length: length)
        try await copier.copy(from: snapshot.store.device, at: geometry.offset(of: run.new), length: length,
                              to: CopyDestination(device: device, offset: offset))
    }

    private func routeMergeView(chunk: ChunkIndex, geometry: ChunkGeometry) -> MergeViewRoute {
        state.withLock { state in
            guard let merge = state.merge else { return .origin }
            if let done = merge.busyEvent(for: chunk) { return .wait(done) }
            if let new = state.tables[ObjectIdentifier(merge.snapshot)]?.exceptions.completed.residentLookup(chunk) { return .store(new) }
            return .origin
        }
    }

    private var mergingSnapshot: Snapshot? { state.withLock { $0.merge?.snapshot } }

    func readMergeView(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) async throws {
        guard let merging = mergingSnapshot else { return try await device.read(into: buffer, at: offset) }
        let geometry = merging.geometry
        try await geometry.forEachPiece(offset: offset, length: buffer.count) { piece in
            switch routeMergeView(chunk: piece.chunk, geometry: geometry) {
            case .wait(let done):
                await done.wait()
                return .retry
            case .store(let new):
                try await merging.store.device.read(into: piece.bytes(of: buffer), at: piece.offset(at: new, in: geometry))
            case .origin:
                try await device.read(into: piece.bytes(of: buffer), at: piece.offset(at: piece.chunk, in: geometry))
            }
            return .done
        }
    }

    func writeMergeView(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) async throws {
        guard let merging = mergingSnapshot else { return try await writeThrough(buffer, at: offset) }
        let geometry = merging.geometry
        try await geometry.forEachPiece(offset: offset, length: buffer.count) { piece in
            let route = routeMergeView(chunk: piece.chunk, geometry: geometry)
            if case .wait(let done) = route {
                await done.wait()
                return .retry
            }
            if case .store(let new) = route {
                try await merging.store.device.write(piece.bytes(of: buffer), at: piece.offset(at: new, in: geometry))
            } else {
                let at = piece.offset(at: piece.chunk, in: geometry)
                await preserve(offset: at, length: piece.length, skipping: merging)
                await waitForSnapshotReads(offset: at, length: piece.length)
                try await device.write(piece.bytes(of: buffer), at: at)
            }
            return .done
        }
    }
}
