import AsyncPrimitives
import BlockDevices
import DequeModule
import Synchronization

/// The kernel-compatible persistent store ("P"): records live in metadata areas on the COW
/// device itself, in the layout of `CowLayout`.
///
/// Invariants (the crash-safety argument of Docs/COW-FORMAT.md):
/// - chunks are allocated sequentially and records are written in allocation order;
/// - an area is written only after a flush of the COW device, so every record on disk points
///   at data that is already durable;
/// - before an area is written full, the next area is zeroed, so a terminator always exists;
/// - one group commit serves every exception that completed meanwhile, and is deferred while
///   others are still in flight unless an area is full; when completed records fill the
///   current area and spill into the next ones, one commit writes them all with two flushes:
///   the later areas (and the zeroed terminator) go down with the data, before the first
///   area, which the loader reads first, is written full;
/// - a device error or abandoned exception invalidates the store, durably if possible;
/// - copies are released from the device's cache only once a commit made them durable.
public final class PersistentExceptionStore: ExceptionStore {
    public let device: any BlockDevice
    public let layout: CowLayout
    private let originChunks: UInt64?
    private let state: Mutex<State>

    /// The longest run `prepareMerge` returns: 1 MiB (or one chunk), so a step's copies overlap.
    var maxMergeRun: Int { max(1, (1 << 20) / layout.geometry.chunkBytes) }

    private struct Allocation {
        let new: ChunkIndex
        var old: ChunkIndex = 0
        var committed: OneShotEvent<Bool>?
    }

    private struct State {
        var valid = true
        var nextFree: ChunkIndex
        var currentArea: UInt64 = 0
        /// Records of the current area, durable or not.
        var area: [DiskException] = []
        /// Prepared exceptions in allocation order, not yet in `area`.
        var inFlight: Deque<Allocation> = []
        /// Waiters of records in `area` that are not yet durable.
        var waiters: [OneShotEvent<Bool>] = []
        /// The COW chunks holding those records' data, lowest to highest.
        var waitingData: ClosedRange<ChunkIndex>?
        /// COW chunks whose data is durable and may still be in the device's cache.
        var durableCachedData: ClosedRange<ChunkIndex>?
        var committerRunning = false
        /// What the store holds once the exceptions of the last `prepareMerge` are forgotten:
        /// the current area then, its records, and how many were prepared.
        var preparedMerge: (area: UInt64, records: [DiskException], count: Int)?

        /// Position of `new` in `inFlight`, which is sorted by allocation (binary search).
        func inFlightIndex(of new: ChunkIndex) -> Int? {
            var low = 0, high = inFlight.count
            while low < high {
                let mid = (low + high) / 2
                if inFlight[mid].new < new { low = mid + 1 } else { high = mid }
            }
            return low < inFlight.count && inFlight[low].new == new ? low : nil
        }

        /// Adds a commit's chunks to the durable ones and returns those to release, forgotten:
        /// all of them once they reach `batch` chunks, or the earlier ones when this commit's lie
        /// below them (allocation starts lower after a merge), so that no range released ever
        /// spans a chunk still being copied.
        mutating func releasable(adding data: ClosedRange<ChunkIndex>?, batch: UInt64) -> ClosedRange<ChunkIndex>? {
            guard let data else { return nil }
            guard let earlier = durableCachedData else {
                durableCachedData = data
                return takeIfFull(batch)
            }
            guard data.lowerBound > earlier.upperBound else {
                durableCachedData = data
                return earlier
            }
            durableCachedData = earlier.lowerBound...data.upperBound
            return takeIfFull(batch)
        }

        /// `range` widened to take in `chunk` (the chunk alone when there is no range). Order-free:
        /// records usually reach a commit in allocation order, but nothing here needs them to.
        static func span(_ range: ClosedRange<ChunkIndex>?, including chunk: ChunkIndex) -> ClosedRange<ChunkIndex> {
            guard let range else { return chunk...chunk }
            return min(range.lowerBound, chunk)...max(range.upperBound, chunk)
        }

        private mutating func takeIfFull(_ batch: UInt64) -> ClosedRange<ChunkIndex>? {
            guard let all = durableCachedData, all.upperBound - all.lowerBound + 1 >= batch else { return nil }
            durableCachedData = nil
            return all
        }
    }

    /// One group commit: area images to write (consecutive areas, the current one first; all
    /// but the last are full), and who waits for them.
    private struct CommitStep {
        let areas: [(area: UInt64, bytes: [UInt8])]
        let lastIsFull: Bool
        let waiters: [OneShotEvent<Bool>]
        /// The COW chunks spanning the data the step makes durable (and metadata between them).
        let data: ClosedRange<ChunkIndex>?
    }

    private init(device: any BlockDevice, layout: CowLayout, originChunks: UInt64?) {
        self.device = device
        self.layout = layout
        self.originChunks = originChunks
        state = Mutex(State(nextFree: layout.firstFree))
    }

    public var geometry: ChunkGeometry { layout.geometry }
    public var isPersistent: Bool { true }
    public var isValid: Bool { state.withLock { $0.valid } }

    /// Writes an empty store to `device` (valid header, zeroed area 0) and flushes it.
    public static func format(_ device: any BlockDevice, geometry: ChunkGeometry, originChunks: UInt64? = nil) async throws -> PersistentExceptionStore {
        let chunkBytes = UInt64(geometry.chunkBytes)
        guard device.size >= CowLayout.minimumChunks * chunkBytes else {
            throw CowFormatError.tooSmall(device: device.name, bytes: device.size, chunkBytes: geometry.chunkBytes)
        }
        let store = PersistentExceptionStore(device: device, layout: CowLayout(geometry: geometry), originChunks: originChunks)
        try await store.writeEmptyStore()
        return store
    }

    /// Opens an existing store (or a zeroed device) after checking its header; call
    /// `readMetadata` next. The chunk size on disk is used; `requiredChunkBytes` refuses another.
    public static func open(_ device: any BlockDevice, requiredChunkBytes: Int? = nil, originChunks: UInt64? = nil) async throws -> PersistentExceptionStore {
        let (_, layout) = try await CowScanner.readHeader(device, requiredChunkBytes: requiredChunkBytes)
        return PersistentExceptionStore(device: device, layout: layout, originChunks: originChunks)
    }

    // MARK: ExceptionStore

    public func readMetadata(_ exception: (ChunkIndex, ChunkIndex) throws -> Void) async throws -> MetadataState {
        let scan = try await CowScanner.scan(device, requiredChunkBytes: layout.geometry.chunkBytes,
                                             originChunks: originChunks) { try exception($0.old, $0.new) }
        if scan.header.magic == 0 && !device.isReadOnly { try await writeEmptyStore() }
        state.withLock { state in
            state.valid = scan.state != .invalid
            state.nextFree = scan.nextFree
            state.currentArea = scan.currentArea
            state.area = scan.currentAreaRecords
        }
        return scan.state
    }

    public func prepareException() throws -> ChunkIndex {
        let deviceChunks = layout.geometry.wholeChunks(in: device.size)
        return try state.withLock { state in
            guard state.valid else { throw StoreError.invalidated }
            let new = state.nextFree
            guard new + 1 <= deviceChunks else { throw StoreError.full }
            // The last data chunk of an area needs room for the next area, which its commit zeroes.
            if layout.isMetadata(new + 1) && new + 2 > deviceChunks { throw StoreError.full }
            state.nextFree = layout.skippingMetadata(new + 1)
            state.inFlight.append(Allocation(new: new))
            return new
        }
    }

    public func commitException(old: ChunkIndex, new: ChunkIndex) async throws {
        try await commitExceptions([DiskException(old: old, new: new)])
    }

    public func commitExceptions(_ exceptions: [DiskException]) async throws {
        let events = exceptions.map { _ in OneShotEvent<Bool>() }
        let drive = try state.withLock { state -> Bool in
            guard state.valid else { throw StoreError.invalidated }
            for (exception, committed) in zip(exceptions, events) {
                guard let index = state.inFlightIndex(of: exception.new) else {
                    preconditionFailure("commit of chunk \(exception.new), which was not prepared")
                }
                state.inFlight[index].old = exception.old
                state.inFlight[index].committed = committed
            }
            if state.committerRunning { return false }
            state.committerRunning = true
            return true
        }
        if drive { await runCommitter() }
        for committed in events {
            guard await committed.wait() else { throw StoreError.invalidated }
        }
    }

    public func abandonException(new: ChunkIndex) async {
        await invalidate()
    }

    public func prepareMerge(limit: Int) async throws -> [MergeRun] {
        var (area, records, valid) = state.withLock { ($0.currentArea, $0.area, $0.valid) }
        guard valid else { throw StoreError.invalidated }
        var runs: [MergeRun] = []
        var taken = 0
        while taken < limit {
            if records.isEmpty {
                // Earlier areas are full: step back into the previous one, as the kernel does.
                guard area > 0 else { break }
                area -= 1
                do { records = try await readArea(area) } catch { throw StoreError.device(error) }
                guard !records.isEmpty else { break }
            }
            let run = Self.newestRun(of: records, longest: min(maxMergeRun, limit - taken))
            records.removeLast(run.count)
            runs.append(run)
            taken += run.count
        }
        let remaining = records
        state.withLock { $0.preparedMerge = (area, remaining, taken) }
        return runs
    }

    /// The run of consecutive records (in both origin and store chunks) that ends `records`.
    private static func newestRun(of records: [DiskException], longest: Int) -> MergeRun {
        let last = records[records.count - 1]
        var count = 1
        while count < min(records.count, longest) {
            let record = records[records.count - 1 - count]
            guard record.old == last.old &- UInt64(count), record.new == last.new &- UInt64(count) else { break }
            count += 1
        }
        return MergeRun(old: last.old - UInt64(count - 1), new: last.new - UInt64(count - 1), count: count)
    }

    public func commitMerge(count: Int) async throws {
        let (area, bytes) = state.withLock { state -> (UInt64, [UInt8]) in
            guard let prepared = state.preparedMerge, prepared.count == count else {
                preconditionFailure("commit of \(count) merged exceptions, not the \(state.preparedMerge?.count ?? 0) prepared")
            }
            state.preparedMerge = nil
            state.currentArea = prepared.area
            state.area = prepared.records
            state.nextFree = layout.areaLocation(prepared.area) + UInt64(prepared.records.count) + 1
            return (prepared.area, MetadataArea.encode(prepared.records, chunkBytes: layout.geometry.chunkBytes))
        }
        // One area write forgets records of several areas: the area left not full is where the
        // loader stops, so what lies after it is never read (and is zeroed before that area
        // fills again). A failure here is not fatal to the store: the data of the runs is already
        // in the origin, so re-running the merge copies it again and rewrites the area.
        do {
            try await writeArea(area, bytes)
        } catch {
            throw StoreError.device(error)
        }
    }

    public var areaLayout: CowLayout? { layout }

    public func readArea(_ area: UInt64) async throws -> [DiskException] {
        let bytes = try await device.readBytes(at: layout.areaOffset(area), count: layout.geometry.chunkBytes)
        return MetadataArea.decode(bytes).records
    }

    public func readRecords(_ exception: (ChunkIndex, ChunkIndex) throws -> Void) async throws {
        _ = try await CowScanner.scan(device, requiredChunkBytes: layout.geometry.chunkBytes, originChunks: originChunks) {
            try exception($0.old, $0.new)
        }
    }

    public func usage() -> StoreUsage {
        let sectors = UInt64(layout.geometry.chunkSectors)
        return state.withLock { state in
            StoreUsage(totalSectors: device.size / UInt64(sectorBytes),
                       allocatedSectors: state.nextFree * sectors,
                       metadataSectors: (state.currentArea + 2) * sectors)
        }
    }

    public func invalidate() async {
        let (wasValid, waiters) = state.withLock { state -> (Bool, [OneShotEvent<Bool>]) in
            let wasValid = state.valid
            state.valid = false
            let waiters = state.waiters + state.inFlight.compactMap(\.committed)
            state.waiters = []
            state.inFlight = []
            return (wasValid, waiters)
        }
        for waiter in waiters { waiter.signal(false) }
        guard wasValid, !device.isReadOnly else { return }
        let header = CowHeader(valid: false, chunkSectors: layout.geometry.chunkSectors)
        try? await device.writeBytes(header.encoded(chunkBytes: layout.geometry.chunkBytes), at: 0)
        try? await device.flush()
    }

    // MARK: group commit

    /// Writes area images until no committed record is left waiting (or the rest must wait).
    private func runCommitter() async {
        while let step = nextCommitStep() {
            do {
                try await write(step)
                let releasable = state.withLock { state in
                    if step.lastIsFull {
                        state.currentArea += 1
                        state.area = []
                    }
                    return state.releasable(adding: step.data, batch: releaseBatchChunks)
                }
                releaseCachedData(releasable)
                for waiter in step.waiters { waiter.signal(true) }
            } catch {
                for waiter in step.waiters { waiter.signal(false) }
                await invalidate()
                state.withLock { $0.committerRunning = false }
                return
            }
        }
    }

    /// Moves committed allocations (in order) into the current area, and on into the next ones
    /// while they fill; returns the next group commit to do, or nil (releasing the committer
    /// role) when nothing is due.
    private func nextCommitStep() -> CommitStep? {
        let perArea = layout.exceptionsPerArea
        let chunkBytes = layout.geometry.chunkBytes
        return state.withLock { state -> CommitStep? in
            var filled: [(area: UInt64, bytes: [UInt8])] = []
            while state.valid {
                while state.area.count < perArea, let first = state.inFlight.first, let committed = first.committed {
                    state.inFlight.removeFirst()
                    state.area.append(DiskException(old: first.old, new: first.new))
                    state.waiters.append(committed)
                    state.waitingData = State.span(state.waitingData, including: first.new)
                }
                guard state.area.count == perArea, state.inFlight.first?.committed != nil else { break }
                // Full, and the next record is ready too: this area goes in the same commit.
                filled.append((state.currentArea, MetadataArea.encode(state.area, chunkBytes: chunkBytes)))
                state.currentArea += 1
                state.area = []
            }
            let full = state.area.count == perArea
            let mustWait = !state.inFlight.isEmpty && !full && filled.isEmpty
            guard state.valid, !state.waiters.isEmpty, !mustWait else {
                state.committerRunning = false
                return nil
            }
            let last = (state.currentArea, MetadataArea.encode(state.area, chunkBytes: chunkBytes))
            let step = CommitStep(areas: filled + [last], lastIsFull: full, waiters: state.waiters, data: state.waitingData)
            state.waiters = []
            state.waitingData = nil
            return step
        }
    }

    /// One group commit. The areas after the first, and the zeroed area after a full last one,
    /// are written with the data and flushed with it; then the first area (the one the loader
    /// reaches first, so until it is written full the rest is not read) and a second flush.
    private func write(_ step: CommitStep) async throws {
        if step.lastIsFull, let last = step.areas.last { try await zeroArea(last.area + 1) }
        for later in step.areas.dropFirst() { try await device.writeBytes(later.bytes, at: layout.areaOffset(later.area)) }
        try await writeArea(step.areas[0].area, step.areas[0].bytes)
    }

    /// Durable copies are released from the device's cache in batches of this many bytes, so a
    /// commit of a few small copies pays no system call for it (one call per commit measured
    /// 0.38 of raw on random 4K first writes at 4K chunks, against 0.46 before; batched 0.39-0.42).
    public static let releaseBatchBytes = 4 << 20
    private var releaseBatchChunks: UInt64 { UInt64(max(1, Self.releaseBatchBytes / layout.geometry.chunkBytes)) }

    /// Lets the device drop copies that commits made durable from its cache: like the kernel's
    /// COW writes, which bypass the page cache, they are read again only by snapshot reads
    /// and merges, and keeping them would fill memory with one more copy per snapshot (on this
    /// project's VM, fresh page-cache memory also writes at a third of the speed: see
    /// Docs/PERFORMANCE-HISTORY.md, session 9). Metadata areas between the chunks go too: a commit
    /// writes an area whole, and only a load or a merge reads one again.
    private func releaseCachedData(_ data: ClosedRange<ChunkIndex>?) {
        guard let data else { return }
        let geometry = layout.geometry
        device.releaseCachedPages(offset: geometry.offset(of: data.lowerBound),
                                  length: Int(data.upperBound - data.lowerBound + 1) * geometry.chunkBytes)
    }

    /// Flushes data, then writes area `area` and flushes again (the kernel's PREFLUSH|FUA).
    private func writeArea(_ area: UInt64, _ bytes: [UInt8]) async throws {
        try await device.flush()
        try await device.writeBytes(bytes, at: layout.areaOffset(area))
        try await device.flush()
    }

    /// Writes area `area` empty (a terminator), unflushed.
    private func zeroArea(_ area: UInt64) async throws {
        try await device.writeBytes([UInt8](repeating: 0, count: layout.geometry.chunkBytes), at: layout.areaOffset(area))
    }

    private func writeEmptyStore() async throws {
        try await zeroArea(0)
        try await device.flush()
        try await device.writeBytes(CowHeader(chunkSectors: layout.geometry.chunkSectors).encoded(chunkBytes: layout.geometry.chunkBytes), at: 0)
        try await device.flush()
        state.withLock { state in
            state.valid = true
            state.nextFree = layout.firstFree
            state.currentArea = 0
            state.area = []
        }
    }
}
