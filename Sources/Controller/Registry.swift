import BlockDevices
import ExceptionMachinery
import Foundation

/// What a pool holds, as written in its registry file (like an LVM volume group's metadata).
///
/// Invariants (checked by `validate`): names are valid and unique across origins and snapshots;
/// no device path is used twice; every snapshot belongs to exactly one origin.
public struct Registry: Codable, Equatable, Sendable {
    public static let currentVersion = 1

    public var version = Registry.currentVersion
    public var origins: [OriginRecord] = []
    public var remaps: [RemapRecord] = []
    /// The pool's autoextend settings (`pool set`), which `serve` applies unless its own flags
    /// say otherwise; nil: never set (off).
    public var autoextend: AutoextendSettings?

    public init() {}

    enum CodingKeys: String, CodingKey { case version, origins, remaps, autoextend }

    public init(from decoder: any Decoder) throws {
        let values = try decoder.container(keyedBy: CodingKeys.self)
        version = try values.decode(Int.self, forKey: .version)
        origins = try values.decode([OriginRecord].self, forKey: .origins)
        remaps = try values.decodeIfPresent([RemapRecord].self, forKey: .remaps) ?? []
        autoextend = try values.decodeIfPresent(AutoextendSettings.self, forKey: .autoextend)
    }

    public var allNames: [String] { origins.flatMap { [$0.name] + $0.snapshots.map(\.name) } + remaps.map(\.name) }

    public func origin(named name: String) -> OriginRecord? { origins.first { $0.name == name } }

    /// This registry with the marks `other` made meanwhile that it lacks: the stale and suspect
    /// marks of `other`'s snapshots (the same name and COW), and the origins' cleared stamps (the
    /// same path; cleared before a write, a stamp stays cleared until its process lets go).
    func keepingMarks(of other: Registry) -> Registry {
        var marked: [String: SnapshotRecord] = [:]
        for origin in other.origins {
            for snapshot in origin.snapshots where snapshot.staleReason != nil || snapshot.suspectReason != nil {
                marked[snapshot.name] = snapshot
            }
        }
        let cleared = Set(other.origins.filter { $0.closedStamp == nil }.map(\.path))
        var result = self
        for originIndex in result.origins.indices {
            if cleared.contains(result.origins[originIndex].path) { result.origins[originIndex].closedStamp = nil }
            for index in result.origins[originIndex].snapshots.indices {
                let snapshot = result.origins[originIndex].snapshots[index]
                guard let mark = marked[snapshot.name], mark.cowPath == snapshot.cowPath else { continue }
                result.origins[originIndex].snapshots[index].staleReason = snapshot.staleReason ?? mark.staleReason
                result.origins[originIndex].snapshots[index].suspectReason = snapshot.suspectReason ?? mark.suspectReason
            }
        }
        return result
    }

    /// Renames snapshot `name`, in its record and in its group's lists.
    mutating func renameSnapshot(_ name: String, to newName: String) {
        for originIndex in origins.indices {
            for index in origins[originIndex].snapshots.indices {
                if origins[originIndex].snapshots[index].name == name { origins[originIndex].snapshots[index].name = newName }
                origins[originIndex].snapshots[index].takenWith = origins[originIndex].snapshots[index].takenWith?.map { $0 == name ? newName : $0 }
            }
        }
    }

    /// Changes the record of the origin at `path` in place, if there is one.
    mutating func updateOrigin(at path: String, _ change: (inout OriginRecord) -> Void) {
        guard let index = origins.firstIndex(where: { $0.path == path }) else { return }
        change(&origins[index])
    }

    /// Changes the record of remap volume `name` in place, if there is one.
    mutating func updateRemap(named name: String, _ change: (inout RemapRecord) -> Void) {
        guard let index = remaps.firstIndex(where: { $0.name == name }) else { return }
        change(&remaps[index])
    }

    /// Changes the record of snapshot `name` in place, if there is one.
    mutating func updateSnapshot(named name: String, _ change: (inout SnapshotRecord) -> Void) {
        for originIndex in origins.indices {
            for index in origins[originIndex].snapshots.indices where origins[originIndex].snapshots[index].name == name {
                change(&origins[originIndex].snapshots[index])
            }
        }
    }

    /// Removes snapshot `name` (deleted or merged away), and its name from its group's members.
    mutating func removeSnapshot(named name: String) {
        for originIndex in origins.indices {
            origins[originIndex].snapshots.removeAll { $0.name == name }
            for index in origins[originIndex].snapshots.indices {
                guard var group = origins[originIndex].snapshots[index].takenWith else { continue }
                group.removeAll { $0 == name }
                origins[originIndex].snapshots[index].takenWith = group.isEmpty ? nil : group
            }
        }
    }

    /// The origin holding snapshot `name`, and the snapshot.
    public func snapshot(named name: String) -> (origin: OriginRecord, snapshot: SnapshotRecord)? {
        for origin in origins {
            if let snapshot = origin.snapshots.first(where: { $0.name == name }) { return (origin, snapshot) }
        }
        return nil
    }

    /// Which volume uses `path` (as origin or COW), if any.
    public func user(of path: String) -> String? {
        if let remap = remaps.first(where: { $0.devicePath == path || $0.sparePath == path }) { return remap.name }
        for origin in origins {
            if origin.path == path { return origin.name }
            if let snapshot = origin.snapshots.first(where: { $0.cowPath == path }) { return snapshot.name }
        }
        return nil
    }

    func validate() throws -> Registry {
        guard version == Registry.currentVersion else { throw RegistryProblem("unsupported registry version \(version)") }
        var names = Set<String>(), paths = Set<String>()
        for remap in remaps {
            guard Registry.isValidName(remap.name) else { throw RegistryProblem("invalid volume name '\(remap.name)'") }
            guard names.insert(remap.name).inserted else { throw RegistryProblem("volume name '\(remap.name)' appears twice") }
            for path in [remap.devicePath, remap.sparePath] {
                guard path.hasPrefix("/"), paths.insert(path).inserted else { throw RegistryProblem("device path '\(path)' is invalid or appears twice") }
            }
            guard ChunkSizes.isValid(remap.chunkSize) else { throw RegistryProblem("remap '\(remap.name)' has invalid chunk size \(remap.chunkSize)") }
        }
        for origin in origins {
            for name in [origin.name] + origin.snapshots.map(\.name) {
                guard Registry.isValidName(name) else { throw RegistryProblem("invalid volume name '\(name)'") }
                guard names.insert(name).inserted else { throw RegistryProblem("volume name '\(name)' appears twice") }
            }
            for path in [origin.path] + origin.snapshots.map(\.cowPath) {
                guard path.hasPrefix("/") else { throw RegistryProblem("device path '\(path)' is not absolute") }
                guard paths.insert(path).inserted else { throw RegistryProblem("device path '\(path)' appears twice") }
            }
            for snapshot in origin.snapshots where !ChunkSizes.isValid(snapshot.chunkSize) {
                throw RegistryProblem("snapshot '\(snapshot.name)' has invalid chunk size \(snapshot.chunkSize)")
            }
        }
        return self
    }

    public static func isValidName(_ name: String) -> Bool {
        guard (1...64).contains(name.count), let first = name.first, first != "-", first != "." else { return false }
        return name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "_" || $0 == "-") }
    }
}

/// An origin in the registry.
public struct OriginRecord: Codable, Equatable, Sendable {
    public var name: String
    public var path: String
    /// Whether snapvol created the file (then `origin remove` leaves it; users own their data).
    public var createdFile = false
    public var snapshots: [SnapshotRecord] = []
    /// The origin's write stamp when the last snapvol process that had it open let it go; nil
    /// while a snapvol process may be writing it (cleared before its first write), and for a
    /// block device whose counters cannot be read. An origin found with a stamp that says it
    /// was written since was written outside snapvol.
    public var closedStamp: WriteStamp?
    /// What the block device at `path` is (`FileBlockDevice.identity`), recorded when the origin
    /// is added or first opened; nil for a file. A device found under the path with another
    /// identity is not this origin.
    public var deviceIdentity: String?

    enum CodingKeys: String, CodingKey {
        case name, path, snapshots
        case createdFile = "created_file", closedStamp = "closed_stamp", deviceIdentity = "device_identity"
    }

    public init(name: String, path: String, createdFile: Bool = false, snapshots: [SnapshotRecord] = []) {
        self.name = name
        self.path = path
        self.createdFile = createdFile
        self.snapshots = snapshots
    }

    public init(from decoder: any Decoder) throws {
        let values = try decoder.container(keyedBy: CodingKeys.self)
        name = try values.decode(String.self, forKey: .name)
        path = try values.decode(String.self, forKey: .path)
        createdFile = try values.decodeIfPresent(Bool.self, forKey: .createdFile) ?? false
        snapshots = try values.decodeIfPresent([SnapshotRecord].self, forKey: .snapshots) ?? []
        closedStamp = try values.decodeIfPresent(WriteStamp.self, forKey: .closedStamp)
        deviceIdentity = try values.decodeIfPresent(String.self, forKey: .deviceIdentity)
    }
}

/// A bad-block remap volume in the registry: a data device and its spare area.
public struct RemapRecord: Codable, Equatable, Sendable {
    public var name: String
    public var devicePath: String
    public var sparePath: String
    public var chunkSize: Int
    /// Whether snapvol created the spare file.
    public var ownsSpare = false
    /// What the block devices at `devicePath` and `sparePath` are (`FileBlockDevice.identity`);
    /// nil for files. A device found under a path with another identity is not this volume's.
    public var deviceIdentity: String?
    public var spareIdentity: String?

    enum CodingKeys: String, CodingKey {
        case name
        case devicePath = "device_path", sparePath = "spare_path", chunkSize = "chunk_size", ownsSpare = "owns_spare"
        case deviceIdentity = "device_identity", spareIdentity = "spare_identity"
    }
}

/// A snapshot in the registry.
public struct SnapshotRecord: Codable, Equatable, Sendable {
    public var name: String
    public var cowPath: String
    public var chunkSize: Int
    public var persistent = true
    /// Whether snapvol created the COW file (then deleting the snapshot deletes the file).
    public var ownsCow = false
    /// Set before a merge starts and cleared when it ends: a merge interrupted by a crash resumes.
    public var merging = false
    /// For a transient snapshot: the process that holds its exceptions in memory.
    public var transientOwner: Int32?
    public var created: Date?
    /// Memory budget of the exception table in bytes; nil: the default; 0: no limit.
    public var exceptionCache: UInt64?
    /// The other snapshots of its consistent group (taken at the same instant) still in the
    /// pool; nil when it was taken alone.
    public var takenWith: [String]?
    /// Why the snapshot was given up while its COW could not be opened (its origin was written
    /// meanwhile, so the COW no longer matches it): it is invalid whenever it is seen again.
    public var staleReason: String?
    /// The origin's size when the snapshot was taken (nil in registries older than this field):
    /// an origin found at another size was resized outside snapvol.
    public var originSize: UInt64?
    /// Why the snapshot may not show its origin as it was when taken: the origin was found
    /// modified outside snapvol, or the COW holding fewer exceptions than it did. Kept until
    /// `snapshot trust` or deletion; the snapshot stays readable.
    public var suspectReason: String?
    /// What the block device at `cowPath` is (`FileBlockDevice.identity`), recorded when the
    /// snapshot is created or attached, or its COW first opened; nil for a file. A device found
    /// under the path with another identity is not this snapshot's COW.
    public var cowIdentity: String?
    /// How many exceptions its COW held when the last snapvol process that had it let it go.
    /// They only grow while the snapshot lives (a merge, which consumes them, is marked), so
    /// a COW found with fewer went back in time: restored from an older copy, say.
    public var closedExceptions: Int?

    enum CodingKeys: String, CodingKey {
        case name, persistent, merging, created, suspectReason = "suspect_reason", cowIdentity = "cow_identity"
        case closedExceptions = "closed_exceptions"
        case cowPath = "cow_path", chunkSize = "chunk_size", ownsCow = "owns_cow", transientOwner = "transient_owner"
        case exceptionCache = "exception_cache", takenWith = "taken_with", staleReason = "stale_reason",
             originSize = "origin_size"
    }

    /// Why the snapshot cannot join its origin `origin`, found at `size`: the origin was resized
    /// outside snapvol since the snapshot was taken. Nil when the size is the one recorded (or
    /// none was, in registries older than `originSize`).
    func resizedOrigin(_ origin: String, size: UInt64) -> String? {
        guard let taken = originSize, taken != size else { return nil }
        return "origin '\(origin)' is \(ByteSize.describe(size)) but was \(ByteSize.describe(taken)) when '\(name)' was taken (resized outside snapvol): put it back to \(ByteSize.describe(taken)), or delete the snapshot"
    }

    /// The budget the snapshot's exception table gets (nil: unlimited).
    public var cacheBudget: ExceptionCache.Budget? { Self.cacheBudget(exceptionCache) }

    /// The budget for a requested `exception_cache` (nil: the default; 0: unlimited, nil).
    static func cacheBudget(_ exceptionCache: UInt64?) -> ExceptionCache.Budget? {
        let bytes = exceptionCache ?? ExceptionCacheSizes.defaultBytes
        return bytes == 0 ? nil : ExceptionCache.Budget(bytes: Int(bytes))
    }

    public init(name: String, cowPath: String, chunkSize: Int, persistent: Bool = true, ownsCow: Bool = false) {
        self.name = name
        self.cowPath = cowPath
        self.chunkSize = chunkSize
        self.persistent = persistent
        self.ownsCow = ownsCow
    }

    public init(from decoder: any Decoder) throws {
        let values = try decoder.container(keyedBy: CodingKeys.self)
        name = try values.decode(String.self, forKey: .name)
        cowPath = try values.decode(String.self, forKey: .cowPath)
        chunkSize = try values.decode(Int.self, forKey: .chunkSize)
        persistent = try values.decodeIfPresent(Bool.self, forKey: .persistent) ?? true
        ownsCow = try values.decodeIfPresent(Bool.self, forKey: .ownsCow) ?? false
        merging = try values.decodeIfPresent(Bool.self, forKey: .merging) ?? false
        transientOwner = try values.decodeIfPresent(Int32.self, forKey: .transientOwner)
        created = try values.decodeIfPresent(Date.self, forKey: .created)
        exceptionCache = try values.decodeIfPresent(UInt64.self, forKey: .exceptionCache)
        takenWith = try values.decodeIfPresent([String].self, forKey: .takenWith)
        staleReason = try values.decodeIfPresent(String.self, forKey: .staleReason)
        originSize = try values.decodeIfPresent(UInt64.self, forKey: .originSize)
        suspectReason = try values.decodeIfPresent(String.self, forKey: .suspectReason)
        cowIdentity = try values.decodeIfPresent(String.self, forKey: .cowIdentity)
        closedExceptions = try values.decodeIfPresent(Int.self, forKey: .closedExceptions)
    }
}

/// Exception-table budgets: the default, and the smallest a command accepts.
public enum ExceptionCacheSizes {
    /// 64 MiB: about eight million exceptions in random order (128 GiB of 16 KiB chunks), far
    /// more in sequential runs, before anything is evicted.
    public static let defaultBytes: UInt64 = 64 << 20
    public static let smallestBytes: UInt64 = 4096

    /// Parses `unlimited`, `0` or a size of at least 4 KiB; returns 0 for no limit.
    public static func parse(_ text: String) throws -> UInt64 {
        if text == "unlimited" || text == "0" { return 0 }
        let bytes: UInt64
        do {
            bytes = try ByteSize.parse(text)
        } catch {
            throw ControllerError.refused("--exception-cache \(text): \(error)")
        }
        guard bytes >= smallestBytes else {
            throw ControllerError.refused("--exception-cache \(text): must be at least 4K, or 'unlimited'")
        }
        return bytes
    }
}

struct RegistryProblem: Error {
    let reason: String
    init(_ reason: String) { self.reason = reason }
}

/// Valid chunk sizes for new snapshots: powers of two from 4 KiB to 1 GiB.
public enum ChunkSizes {
    public static let defaultBytes = 16 * 1024

    public static func isValid(_ bytes: Int) -> Bool {
        bytes >= 4096 && bytes <= 1 << 30 && bytes & (bytes - 1) == 0
    }
}

/// Reads and atomically replaces the registry file.
enum RegistryFile {
    static func load(_ location: PoolLocation) throws -> Registry {
        let path = location.registryPath
        try location.requireAccess()
        guard let data = FileManager.default.contents(atPath: path) else {
            if FileManager.default.fileExists(atPath: location.directory) && FileManager.default.fileExists(atPath: path) {
                throw ControllerError.corruptRegistry(path: path, reason: "unreadable")
            }
            throw ControllerError.noPool(location.directory)
        }
        do {
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .iso8601
            return try decoder.decode(Registry.self, from: data).validate()
        } catch let problem as RegistryProblem {
            throw ControllerError.corruptRegistry(path: path, reason: problem.reason)
        } catch let error as DecodingError {
            throw ControllerError.corruptRegistry(path: path, reason: describe(error))
        } catch {
            throw ControllerError.corruptRegistry(path: path, reason: "\(error)")
        }
    }

    /// Writes a temp file, fsyncs it, renames it over the registry, and fsyncs the directory.
    static func save(_ registry: Registry, to location: PoolLocation) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        let data = try encoder.encode(registry)
        let temp = "\(location.registryPath).tmp"
        try writeDurably(data, to: temp)
        guard rename(temp, location.registryPath) == 0 else {
            throw ControllerError.refused("cannot replace \(location.registryPath): \(String(cString: strerror(errno)))")
        }
        try syncDirectory(location.directory)
    }

    static func writeDurably(_ data: Data, to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ControllerError.refused("cannot write \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == data.count, fsync(fd) == 0 else {
            throw ControllerError.refused("cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }

    static func syncDirectory(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw ControllerError.refused("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        _ = fsync(fd)
    }

    private static func describe(_ error: DecodingError) -> String {
        switch error {
        case .dataCorrupted(let context): return "not valid JSON (\(context.debugDescription))"
        case .keyNotFound(let key, _): return "missing field '\(key.stringValue)'"
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            return "bad value at \(context.codingPath.map(\.stringValue).joined(separator: "."))"
        @unknown default: return "\(error)"
        }
    }
}
