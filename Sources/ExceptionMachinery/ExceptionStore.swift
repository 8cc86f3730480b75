import BlockDevices

/// Space figures of a store, in 512-byte sectors, as `dmsetup status` prints them.
public struct StoreUsage: Sendable, Equatable {
    public var totalSectors: UInt64
    public var allocatedSectors: UInt64
    public var metadataSectors: UInt64

    public init(totalSectors: UInt64, allocatedSectors: UInt64, metadataSectors: UInt64) {
        self.totalSectors = totalSectors
        self.allocatedSectors = allocatedSectors
        self.metadataSectors = metadataSectors
    }

    /// LVM's Data%: 0 when only metadata is allocated, 100 when full, else allocated / total.
    public var dataPercent: Double {
        if allocatedSectors <= metadataSectors { return 0 }
        if allocatedSectors >= totalSectors { return 100 }
        return Double(allocatedSectors) * 100 / Double(totalSectors)
    }

    /// The `<allocated>/<total> <metadata>` part of a dm status line.
    public var dmStatus: String { "\(allocatedSectors)/\(totalSectors) \(metadataSectors)" }
}

/// What loading a store's metadata found.
public enum MetadataState: Sendable, Equatable {
    /// A store that never held an exception (freshly initialised, or magic 0).
    case fresh
    /// A valid store; its exceptions were reported.
    case valid
    /// The store was invalidated (header valid = 0); no exceptions are reported.
    case invalid
}

/// A run of consecutive exceptions to merge back, newest last on disk.
public struct MergeRun: Sendable, Equatable {
    /// First origin chunk of the run.
    public let old: ChunkIndex
    /// First store chunk of the run.
    public let new: ChunkIndex
    public let count: Int

    public init(old: ChunkIndex, new: ChunkIndex, count: Int) {
        self.old = old
        self.new = new
        self.count = count
    }
}

/// Why a store operation failed.
public enum StoreError: Error, CustomStringConvertible {
    /// No room for another exception.
    case full
    /// The store was invalidated; it accepts nothing more.
    case invalidated
    /// The operation is not available on this kind of store (merge of a transient store).
    case unsupported(String)
    /// Reading or writing the store's device failed (the store is now invalid).
    case device(any Error)

    public var description: String {
        switch self {
        case .full: return "the COW store is full"
        case .invalidated: return "the snapshot is invalid (its COW store was invalidated)"
        case .unsupported(let what): return "\(what) is not supported by this store"
        case .device(let error): return "COW device error: \(error)"
        }
    }
}

/// Where exceptions are recorded: the kernel's `dm_exception_store_type`, as an interface.
///
/// The store allocates store chunks and makes records durable; it knows nothing of origins,
/// snapshots or I/O routing. Its users (policies) copy the data and keep the lookup table.
///
/// Invariants every store keeps:
/// - `prepareException` hands out chunks in strictly increasing allocation order.
/// - `commitException` returns only when the record (and, for persistent stores, the data
///   written to its chunk before the call) is durable; records become durable in allocation
///   order, whatever order the commits arrive in.
/// - Once invalidated, a store refuses every later prepare and commit.
public protocol ExceptionStore: AnyObject, Sendable {
    /// The device holding the exceptions' data (and, for persistent stores, the metadata).
    var device: any BlockDevice { get }
    var geometry: ChunkGeometry { get }
    /// Whether exceptions survive a restart.
    var isPersistent: Bool { get }
    /// Whether the store has been invalidated.
    var isValid: Bool { get }

    /// Loads the metadata, calling `exception(old, new)` for each record in on-disk order.
    func readMetadata(_ exception: (ChunkIndex, ChunkIndex) throws -> Void) async throws -> MetadataState

    /// Allocates a store chunk for a new exception. Throws `StoreError.full` when there is no room.
    func prepareException() throws -> ChunkIndex

    /// Makes the exception `old -> new` durable. `new` must come from `prepareException`.
    func commitException(old: ChunkIndex, new: ChunkIndex) async throws

    /// Makes several exceptions durable, registered together so one group commit serves them
    /// (a copy run's). Each `new` must come from `prepareException`. Throws if any of them was
    /// not made durable.
    func commitExceptions(_ exceptions: [DiskException]) async throws

    /// Gives up a prepared exception whose copy failed; the store invalidates itself.
    func abandonException(new: ChunkIndex) async

    /// The newest exceptions still to merge, as runs of consecutive ones, newest first, at most
    /// `limit` exceptions in all (possibly from several metadata areas); empty when none is
    /// left. A second call before `commitMerge` prepares the same exceptions again. Callers
    /// merge only while no prepared exception is in flight (a merging snapshot receives no
    /// copies and refuses writes): `commitMerge` moves the next free chunk back.
    func prepareMerge(limit: Int) async throws -> [MergeRun]

    /// Durably forgets the `count` exceptions the last `prepareMerge` returned (all of them).
    func commitMerge(count: Int) async throws

    /// Space figures for status.
    func usage() -> StoreUsage

    /// Marks the store invalid, durably for persistent stores (the kernel's drop_snapshot).
    func invalidate() async

    /// The metadata layout, for stores that keep records in areas on their device (the
    /// backing store of a bounded `ExceptionCache`); nil for stores that keep none.
    var areaLayout: CowLayout? { get }

    /// The records of metadata area `area` as they are on disk (one read).
    func readArea(_ area: UInt64) async throws -> [DiskException]

    /// Calls `exception(old, new)` for every durable record, changing nothing (a fresh read of
    /// what `readMetadata` loaded, for callers that need every record at once).
    func readRecords(_ exception: (ChunkIndex, ChunkIndex) throws -> Void) async throws
}

extension ExceptionStore {
    /// One at a time: right for stores whose commit does not wait for I/O.
    public func commitExceptions(_ exceptions: [DiskException]) async throws {
        for exception in exceptions { try await commitException(old: exception.old, new: exception.new) }
    }

    /// The most exceptions the store's device can hold (sizes cache filters).
    public var capacity: UInt64 { geometry.wholeChunks(in: device.size) }
}
