import Foundation
import ExceptionMachinery
import VolumeTargets

/// The status model every front end shows: `status --json` prints it as is.
public struct PoolStatus: Codable, Sendable, Equatable {
    public var pool: String
    public var origins: [OriginStatus]
    public var remaps: [RemapReport] = []

    enum CodingKeys: String, CodingKey { case pool, origins, remaps }

    public init(pool: String, origins: [OriginStatus], remaps: [RemapReport] = []) {
        self.pool = pool
        self.origins = origins
        self.remaps = remaps
    }

    public init(from decoder: any Decoder) throws {
        let values = try decoder.container(keyedBy: CodingKeys.self)
        pool = try values.decode(String.self, forKey: .pool)
        origins = try values.decode([OriginStatus].self, forKey: .origins)
        remaps = try values.decodeIfPresent([RemapReport].self, forKey: .remaps) ?? []
    }

    public func origin(named name: String) -> OriginStatus? { origins.first { $0.name == name } }

    public func snapshot(named name: String) -> SnapshotReport? {
        origins.lazy.flatMap(\.snapshots).first { $0.name == name }
    }
}

/// One origin and its snapshots.
public struct OriginStatus: Codable, Sendable, Equatable {
    public var name: String
    public var path: String
    public var size: UInt64
    /// `active`, or `inactive` when its device could not be opened (see `reason`).
    public var state: String
    public var reason: String?
    public var readBytes: UInt64
    public var writeBytes: UInt64
    /// Read and write requests served (nil when not known: read-only monitoring).
    public var readOps: UInt64?
    public var writeOps: UInt64?
    /// Writes acknowledged and still queued behind their copies, and their bytes (nil when the
    /// origin is not open in this process: a read-only observer cannot know).
    public var queuedWrites: Int?
    public var queuedBytes: UInt64?
    /// NBD clients that have it open (nil when not known: read-only monitoring).
    public var clients: Int?
    /// What its block device is, as recorded (nil for a file; see `OriginRecord.deviceIdentity`).
    public var deviceIdentity: String?
    public var snapshots: [SnapshotReport]

    enum CodingKeys: String, CodingKey {
        case name, path, size, state, reason, snapshots, clients, deviceIdentity = "device_identity"
        case readBytes = "read_bytes", writeBytes = "write_bytes", queuedWrites = "queued_writes", queuedBytes = "queued_bytes"
        case readOps = "read_ops", writeOps = "write_ops"
    }

    public init(name: String, path: String, size: UInt64, state: String, reason: String?, readBytes: UInt64, writeBytes: UInt64,
                queued: QueuedWrites? = nil, snapshots: [SnapshotReport]) {
        self.name = name
        self.path = path
        self.size = size
        self.state = state
        self.reason = reason
        self.readBytes = readBytes
        self.writeBytes = writeBytes
        self.queuedWrites = queued?.writes
        self.queuedBytes = queued?.bytes
        self.snapshots = snapshots
    }
}

/// One snapshot's figures. Sizes are bytes; `state` is one of `active`, `invalid`, `overflow`,
/// `merging`, `merge-failed`, `inactive`.
public struct SnapshotReport: Codable, Sendable, Equatable {
    public var name: String
    public var origin: String
    public var cowPath: String
    public var chunkSize: Int
    public var persistent: Bool
    public var exceptions: Int
    public var cowUsedBytes: UInt64
    public var cowTotalBytes: UInt64
    public var fillPercent: Double
    public var pendingCopies: Int
    public var state: String
    public var reason: String?
    public var dmStatus: String
    public var readBytes: UInt64
    public var writeBytes: UInt64
    /// Read and write requests served (nil when not active here).
    public var readOps: UInt64?
    public var writeOps: UInt64?
    /// The in-memory exception table (nil when the snapshot is not active here).
    public var table: TableReport?
    /// NBD clients that have it open (nil when not known: read-only monitoring).
    public var clients: Int?
    /// The other snapshots of its consistent group still in the pool (nil: taken alone).
    public var takenWith: [String]?
    /// When it was taken, ISO 8601 in UTC (`2026-11-30T23:58:12Z`); nil when not known (a COW
    /// the kernel wrote, adopted with `snapshot attach`).
    public var created: String?
    /// Why it may not show its origin as it was when taken (the origin was modified outside
    /// snapvol), whatever its state; nil when there is no such doubt.
    public var suspect: String?
    /// What its COW's block device is, as recorded (nil for a file).
    public var cowIdentity: String?

    enum CodingKeys: String, CodingKey {
        case name, origin, persistent, exceptions, state, reason, table, clients, created, suspect, cowIdentity = "cow_identity"
        case takenWith = "taken_with"
        case cowPath = "cow_path", chunkSize = "chunk_size", cowUsedBytes = "cow_used_bytes"
        case cowTotalBytes = "cow_total_bytes", fillPercent = "fill_percent", pendingCopies = "pending_copies"
        case dmStatus = "dm_status", readBytes = "read_bytes", writeBytes = "write_bytes", readOps = "read_ops", writeOps = "write_ops"
    }

    init(record: SnapshotRecord, origin: String, status: SnapshotStatus) {
        name = record.name
        self.origin = origin
        cowPath = record.cowPath
        chunkSize = status.chunkBytes
        persistent = status.persistent
        exceptions = status.exceptions
        cowUsedBytes = status.usage.allocatedSectors * UInt64(sectorBytes)
        cowTotalBytes = status.usage.totalSectors * UInt64(sectorBytes)
        pendingCopies = status.pendingExceptions
        state = status.condition.word
        if case .invalid(let why) = status.condition { reason = why }
        if case .mergeFailed(let why) = status.condition { reason = why }
        fillPercent = state == "invalid" ? 100 : (status.usage.dataPercent * 100).rounded() / 100
        dmStatus = status.dmStatusLine
        readBytes = status.io.readBytes
        writeBytes = status.io.writeBytes
        readOps = status.io.readOps
        writeOps = status.io.writeOps
        table = status.cache.map(TableReport.init)
        takenWith = record.takenWith
        created = record.created.map(Self.timestamp)
        suspect = record.suspectReason
        cowIdentity = record.cowIdentity
    }

    /// A snapshot that could not be activated.
    init(record: SnapshotRecord, origin: String, state: String, reason: String, originSize: UInt64) {
        name = record.name
        self.origin = origin
        cowPath = record.cowPath
        chunkSize = record.chunkSize
        persistent = record.persistent
        exceptions = 0
        cowUsedBytes = 0
        cowTotalBytes = 0
        fillPercent = state == "invalid" ? 100 : 0
        pendingCopies = 0
        self.state = state
        self.reason = reason
        dmStatus = "0 \(originSize / UInt64(sectorBytes)) snapshot \(state == "invalid" ? "Invalid" : "Inactive")"
        readBytes = 0
        writeBytes = 0
        takenWith = record.takenWith
        created = record.created.map(Self.timestamp)
        suspect = record.suspectReason
        cowIdentity = record.cowIdentity
    }

    /// Why, after the state word, in tables and details: the state's reason, else the suspicion.
    public var stateNote: String? { reason ?? suspect.map { "SUSPECT: \($0)" } }

    /// `created` as a date.
    public var createdDate: Date? { created.flatMap { try? Date($0, strategy: .iso8601) } }

    static func timestamp(_ date: Date) -> String { date.formatted(.iso8601) }
}

/// A snapshot's exception table: what is resident, its budget, how often lookups needed a
/// metadata read.
public struct TableReport: Codable, Sendable, Equatable {
    public var residentBytes: Int
    public var residentExceptions: Int
    /// Nil: no limit.
    public var budgetBytes: Int?
    public var lookups: Int
    public var hitRate: Double
    public var areaReads: Int

    enum CodingKeys: String, CodingKey {
        case lookups
        case residentBytes = "resident_bytes", residentExceptions = "resident_exceptions", budgetBytes = "budget_bytes"
        case hitRate = "hit_rate", areaReads = "area_reads"
    }

    init(_ figures: ExceptionCache.Figures) {
        residentBytes = figures.residentBytes
        residentExceptions = figures.residentExceptions
        budgetBytes = figures.budgetBytes
        lookups = figures.lookups
        hitRate = (figures.hitRate * 10000).rounded() / 10000
        areaReads = figures.areaReads
    }

    /// "1.2 MiB of 64 MiB, 99.5% hits" for tables and panes.
    public var summary: String {
        let budget = budgetBytes.map { " of " + ByteSize.describe(UInt64($0)) } ?? " (no limit)"
        return ByteSize.describe(UInt64(residentBytes)) + budget + String(format: ", %.1f%% hits", hitRate * 100)
            + (areaReads > 0 ? ", \(areaReads) metadata reads" : "")
    }
}

/// One remap volume's figures: chunks remapped, the spare area's fill, its state
/// (`active`, `invalid`, `inactive`).
public struct RemapReport: Codable, Sendable, Equatable {
    public var name: String
    public var devicePath: String
    public var sparePath: String
    public var size: UInt64
    public var chunkSize: Int
    public var remapped: Int
    public var pending: Int
    public var marked: Int
    public var spareUsedBytes: UInt64
    public var spareTotalBytes: UInt64
    public var fillPercent: Double
    public var state: String
    public var reason: String?
    /// NBD clients that have it open (nil when not known: read-only monitoring).
    public var clients: Int?

    enum CodingKeys: String, CodingKey {
        case name, size, remapped, pending, marked, state, reason, clients
        case devicePath = "device_path", sparePath = "spare_path", chunkSize = "chunk_size"
        case spareUsedBytes = "spare_used_bytes", spareTotalBytes = "spare_total_bytes", fillPercent = "fill_percent"
    }

    /// From the spare area's metadata on disk (read-only monitoring).
    init(record: RemapRecord, scan: CowScan?, dataSize: UInt64, spareSize: UInt64, problem: String?) {
        name = record.name
        devicePath = record.devicePath
        sparePath = record.sparePath
        chunkSize = record.chunkSize
        size = dataSize
        remapped = scan?.exceptionCount ?? 0
        pending = 0
        marked = 0
        let usage = scan?.usage(deviceBytes: spareSize)
        spareUsedBytes = (usage?.allocatedSectors ?? 0) * UInt64(sectorBytes)
        spareTotalBytes = spareSize
        fillPercent = ((usage?.dataPercent ?? 0) * 100).rounded() / 100
        state = scan == nil ? "inactive" : (scan?.state == .invalid ? "invalid" : "active")
        reason = problem
    }

    init(record: RemapRecord, volume: RemapVolume?, problem: String?) {
        name = record.name
        devicePath = record.devicePath
        sparePath = record.sparePath
        chunkSize = record.chunkSize
        let status = volume?.status
        size = volume?.size ?? 0
        remapped = status?.remapped ?? 0
        pending = status?.pending ?? 0
        marked = status?.marked ?? 0
        spareUsedBytes = (status?.usage.allocatedSectors ?? 0) * UInt64(sectorBytes)
        spareTotalBytes = (status?.usage.totalSectors ?? 0) * UInt64(sectorBytes)
        fillPercent = ((status?.usage.dataPercent ?? 0) * 100).rounded() / 100
        state = volume == nil ? "inactive" : (status?.failure == nil ? "active" : "invalid")
        reason = problem ?? status?.failure
    }
}
