import BlockDevices
import ExceptionMachinery
import Synchronization
import SystemPackage

/// A bad-block remapper: a data device plus a spare area, on the same exception machinery as
/// snapshots. The policy differs only in *when* an exception is created (a write that fails with
/// EIO, a chunk marked after a failed read, or `remap(chunk:)`) and *what* I/O to a remapped chunk
/// does (it goes to the spare chunk). The remap table is a persistent exception store on the spare
/// device (old chunk = data-device chunk, new chunk = spare chunk), crash-safe the same way.
///
/// Invariants: a write is acknowledged only after its data is on the data device or, for a
/// remapped chunk, after the remap record is durable; a chunk is remapped at most once.
public final class RemapVolume: Volume {
    public let name: String
    public let data: any BlockDevice
    public let store: any ExceptionStore
    public let counters = IOCounters()
    private let copier: ChunkCopier
    private let state: Mutex<RemapState>

    struct RemapState {
        var exceptions: ExceptionSet
        /// Chunks whose read failed: remapped on their next write.
        var marked: Set<ChunkIndex> = []
        var failure: String?
    }

    private init(name: String, data: any BlockDevice, store: any ExceptionStore, table: ExceptionCache, copier: ChunkCopier) {
        self.name = name
        self.data = data
        self.store = store
        self.copier = copier
        state = Mutex(RemapState(exceptions: ExceptionSet(completed: table)))
    }

    /// Loads the remap table from `store` (the spare device) and returns the volume.
    public static func open(name: String, data: any BlockDevice, store: any ExceptionStore,
                            copier: ChunkCopier = ChunkCopier()) async throws -> RemapVolume {
        // Unbounded: a remap table is small (bad chunks), so its lookups never answer `unloaded`.
        var table = ExceptionCache()
        let loaded = try await store.readMetadata { old, new in table.insert(old: old, new: new) }
        let volume = RemapVolume(name: name, data: data, store: store, table: table, copier: copier)
        if loaded == .invalid { volume.state.withLock { $0.failure = "spare area invalidated on disk" } }
        return volume
    }

    public var size: UInt64 { data.size }
    var geometry: ChunkGeometry { store.geometry }

    // MARK: I/O

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) async throws {
        try checkRange(offset: offset, length: UInt64(buffer.count))
        try await geometry.forEachPiece(offset: offset, length: buffer.count) { piece in
            switch state.withLock({ $0.exceptions.lookup(piece.chunk) }) {
            case .pending(let exception):
                _ = await exception.wait()
                return .retry
            case .completed(let new):
                try await store.device.read(into: piece.bytes(of: buffer), at: piece.offset(at: new, in: geometry))
            case .absent, .unloaded:
                do {
                    try await data.read(into: piece.bytes(of: buffer), at: piece.offset(at: piece.chunk, in: geometry))
                } catch where Self.isMediumError(error) {
                    state.withLock { _ = $0.marked.insert(piece.chunk) }
                    throw error
                }
            }
            return .done
        }
        counters.countRead(buffer.count)
    }

    public func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) async throws {
        try checkRange(offset: offset, length: UInt64(buffer.count))
        try await geometry.forEachPiece(offset: offset, length: buffer.count) { piece in
            let source = piece.bytes(of: buffer)
            switch try route(piece.chunk) {
            case .wait(let exception):
                _ = await exception.wait()
                return .retry
            case .spare(let new):
                try await store.device.write(source, at: piece.offset(at: new, in: geometry))
            case .create(let exception):
                try await fill(exception, overlay: source, at: piece.offsetInChunk)
            case .data:
                do {
                    try await data.write(source, at: piece.offset(at: piece.chunk, in: geometry))
                } catch where Self.isMediumError(error) {
                    state.withLock { _ = $0.marked.insert(piece.chunk) }
                    return .retry
                }
            }
            return .done
        }
        counters.countWrite(buffer.count)
    }

    public func flush() async throws {
        try await data.flush()
        try await store.device.flush()
    }

    /// The data device's data and holes, with every chunk remapped (or being remapped) to the
    /// spare area as data; at most `Origin.mapChunks` chunks per map.
    public func dataMap(offset: UInt64, length: UInt64) async throws -> RangeMap {
        try checkRange(offset: offset, length: length)
        let span = geometry.mapSpan(offset: offset, length: length)
        let remapped = state.withLock { state in
            geometry.pieces(offset: span.lowerBound, length: Int(span.count)).compactMap { piece -> Range<UInt64>? in
                if case .absent = state.exceptions.lookup(piece.chunk) { return nil }
                let start = piece.offset(at: piece.chunk, in: geometry)
                return start..<start + UInt64(piece.length)
            }
        }
        return RangeMap(start: span.lowerBound, end: span.upperBound, ranges: try data.dataExtents(in: span) + remapped)
    }

    /// Remaps `chunk` now, copying what of it is still readable (unreadable sectors become zeros).
    /// Returns false if it was already remapped.
    @discardableResult
    public func remap(chunk: ChunkIndex) async throws -> Bool {
        guard chunk < geometry.chunksCovering(size) else {
            throw VolumeError.outOfRange(volume: name, offset: geometry.offset(of: chunk), length: UInt64(geometry.chunkBytes), size: size)
        }
        state.withLock { _ = $0.marked.insert(chunk) }
        while true {
            switch try route(chunk) {
            case .wait(let exception): _ = await exception.wait()
            case .create(let exception):
                try await fill(exception, overlay: nil, at: 0)
                return true
            case .spare, .data: return false
            }
        }
    }

    // MARK: remapping

    /// Where a write to one chunk goes.
    enum Route {
        case spare(ChunkIndex)
        case wait(PendingException)
        case data
        /// The chunk was marked for remapping and this caller created its exception: it must fill it.
        case create(PendingException)
    }

    /// Routes a chunk for writing; a chunk marked for remapping gets its exception here.
    private func route(_ chunk: ChunkIndex) throws -> Route {
        try state.withLock { state in
            if let failure = state.failure { throw VolumeError.invalid(volume: name, reason: failure) }
            switch state.exceptions.lookup(chunk) {
            case .completed(let new): return .spare(new)
            case .pending(let exception): return .wait(exception)
            case .absent where !state.marked.contains(chunk), .unloaded where !state.marked.contains(chunk): return .data
            case .absent, .unloaded: break
            }
            do {
                let exception = try state.exceptions.begin(chunk, in: store)
                state.marked.remove(chunk)
                return .create(exception)
            } catch StoreError.full {
                throw VolumeError.refused(volume: name, reason: "spare area full: chunk \(chunk) cannot be remapped")
            }
        }
    }

    /// Writes the chunk's new home: the readable old data with `overlay` on top, then commits.
    private func fill(_ exception: PendingException, overlay: UnsafeRawBufferPointer?, at offsetInChunk: Int) async throws {
        let chunkBytes = Int(min(UInt64(geometry.chunkBytes), size - geometry.offset(of: exception.old)))
        let image = AlignedBuffer(count: chunkBytes)
        if overlay?.count != chunkBytes { await readSalvaging(exception.old, into: image) }
        if let overlay {
            UnsafeMutableRawBufferPointer(rebasing: image.mutableBytes[offsetInChunk..<offsetInChunk + overlay.count]).copyMemory(from: overlay)
        }
        var committed = false
        defer {
            state.withLock { $0.exceptions.end(exception, committed: committed) }
            exception.completion.signal(committed)
        }
        do {
            try await store.device.write(image.bytes, at: geometry.offset(of: exception.new))
            try await store.commitException(old: exception.old, new: exception.new)
            committed = true
        } catch {
            state.withLock { $0.failure = "remap of chunk \(exception.old) failed: \(error)" }
            throw error
        }
    }

    /// Reads chunk `chunk` of the data device sector by sector where a whole read fails;
    /// unreadable sectors stay zero.
    private func readSalvaging(_ chunk: ChunkIndex, into image: AlignedBuffer) async {
        let base = geometry.offset(of: chunk)
        if (try? await data.read(into: image.mutableBytes, at: base)) != nil { return }
        for sector in stride(from: 0, to: image.count, by: sectorBytes) {
            let length = min(sectorBytes, image.count - sector)
            let slice = UnsafeMutableRawBufferPointer(rebasing: image.mutableBytes[sector..<sector + length])
            if (try? await data.read(into: slice, at: base + UInt64(sector))) == nil { slice.initializeMemory(as: UInt8.self, repeating: 0) }
        }
    }

    /// Removed from its pool: writes and remaps are refused from now on (a write already
    /// routed may still land; reads go on, and change nothing).
    public func retire() {
        state.withLock { $0.failure = "remap volume was removed from its pool" }
    }

    /// EIO from the medium (or an injected fault): the errors remapping exists for.
    static func isMediumError(_ error: any Error) -> Bool {
        (error as? DeviceError)?.errno == .ioError
    }
}

/// What a remap volume looks like right now.
public struct RemapStatus: Sendable, Equatable {
    public var name: String
    public var chunkBytes: Int
    public var remapped: Int
    public var pending: Int
    /// Chunks whose read failed, waiting for a write to remap them.
    public var marked: Int
    public var usage: StoreUsage
    public var failure: String?
}

extension RemapVolume {
    public var status: RemapStatus {
        state.withLock { state in
            RemapStatus(name: name, chunkBytes: geometry.chunkBytes, remapped: state.exceptions.completed.count,
                        pending: state.exceptions.pending.count, marked: state.marked.count, usage: store.usage(),
                        failure: state.failure)
        }
    }
}
