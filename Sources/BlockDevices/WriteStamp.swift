import Foundation
import SystemPackage

/// What the kernel says of writes to a device: taken when snapvol lets an origin go, compared
/// when it next opens it, to tell whether something else wrote it meanwhile.
///
/// Invariant: every write changes the stamp, as long as the device stays the same device.
/// - A regular file: its modification time and size. Every write, truncation or punched hole
///   changes them; reads, permission and owner changes do not. `touch` and tools that restore
///   times can change them without a write, so a change means "may have been written".
/// - A block device: the kernel's counts of sectors written and discarded through it (sysfs
///   `stat`). They hold for one instance of the device in one boot: the boot's id and the
///   device's `diskseq` (a loop device set up again, a logical volume activated again, gets a
///   new one) say which; across them, nothing can be told.
public enum WriteStamp: Equatable, Sendable {
    case file(FileTimes)
    case device(DeviceCounters)

    /// A regular file's modification time and size.
    public struct FileTimes: Equatable, Sendable {
        public var modifiedSeconds: Int64
        public var modifiedNanoseconds: Int64
        public var size: UInt64

        public init(modifiedSeconds: Int64, modifiedNanoseconds: Int64, size: UInt64) {
            self.modifiedSeconds = modifiedSeconds
            self.modifiedNanoseconds = modifiedNanoseconds
            self.size = size
        }

        /// The modification time.
        public var modified: Date {
            Date(timeIntervalSince1970: TimeInterval(modifiedSeconds) + TimeInterval(modifiedNanoseconds) / 1e9)
        }
    }

    /// A block device's write counters, and the device instance and boot they count in.
    public struct DeviceCounters: Equatable, Sendable {
        public var bootID: String
        /// The device's `diskseq` (Linux 5.15 and later; a partition's is its disk's).
        public var diskSequence: UInt64?
        public var sectorsWritten: UInt64
        public var sectorsDiscarded: UInt64

        public init(bootID: String, diskSequence: UInt64?, sectorsWritten: UInt64, sectorsDiscarded: UInt64) {
            self.bootID = bootID
            self.diskSequence = diskSequence
            self.sectorsWritten = sectorsWritten
            self.sectorsDiscarded = sectorsDiscarded
        }
    }

    /// What a stamp taken now says against `closed`, taken when snapvol let the device go.
    public enum Change: Equatable, Sendable {
        case unchanged
        /// A file modified (or touched) at that time.
        case modified(Date)
        /// A block device written or discarded through, that many bytes (at least).
        case written(bytes: UInt64)
        /// Nothing can be told: the stamps count different things (the reason says which).
        case unknowable(reason: String)
    }

    /// How this stamp (now) differs from `closed`.
    public func change(since closed: WriteStamp) -> Change {
        switch (self, closed) {
        case (.file(let now), .file(let then)):
            return now == then ? .unchanged : .modified(now.modified)
        case (.device(let now), .device(let then)):
            if now.bootID != then.bootID { return .unknowable(reason: "the host has restarted since") }
            if now.diskSequence != then.diskSequence { return .unknowable(reason: "the device has been set up again since") }
            // Counters only grow within one instance; a drop would be another instance.
            guard now.sectorsWritten >= then.sectorsWritten, now.sectorsDiscarded >= then.sectorsDiscarded else {
                return .unknowable(reason: "its write counters went back")
            }
            let sectors = (now.sectorsWritten - then.sectorsWritten) + (now.sectorsDiscarded - then.sectorsDiscarded)
            return sectors == 0 ? .unchanged : .written(bytes: sectors * 512)
        default:
            return .unknowable(reason: "it has changed between a file and a block device")
        }
    }
}

extension WriteStamp: Codable {
    enum CodingKeys: String, CodingKey {
        case size, modifiedSeconds = "modified_seconds", modifiedNanoseconds = "modified_nanoseconds"
        case bootID = "boot_id", diskSequence = "disk_sequence", sectorsWritten = "sectors_written", sectorsDiscarded = "sectors_discarded"
    }

    /// One flat object; a block device's has `boot_id` (a file's, written before block devices had
    /// stamps, has only the time and size).
    public init(from decoder: any Decoder) throws {
        let values = try decoder.container(keyedBy: CodingKeys.self)
        if let bootID = try values.decodeIfPresent(String.self, forKey: .bootID) {
            self = .device(DeviceCounters(bootID: bootID, diskSequence: try values.decodeIfPresent(UInt64.self, forKey: .diskSequence),
                                          sectorsWritten: try values.decode(UInt64.self, forKey: .sectorsWritten),
                                          sectorsDiscarded: try values.decode(UInt64.self, forKey: .sectorsDiscarded)))
        } else {
            self = .file(FileTimes(modifiedSeconds: try values.decode(Int64.self, forKey: .modifiedSeconds),
                                   modifiedNanoseconds: try values.decode(Int64.self, forKey: .modifiedNanoseconds),
                                   size: try values.decode(UInt64.self, forKey: .size)))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var values = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .file(let times):
            try values.encode(times.modifiedSeconds, forKey: .modifiedSeconds)
            try values.encode(times.modifiedNanoseconds, forKey: .modifiedNanoseconds)
            try values.encode(times.size, forKey: .size)
        case .device(let counters):
            try values.encode(counters.bootID, forKey: .bootID)
            try values.encodeIfPresent(counters.diskSequence, forKey: .diskSequence)
            try values.encode(counters.sectorsWritten, forKey: .sectorsWritten)
            try values.encode(counters.sectorsDiscarded, forKey: .sectorsDiscarded)
        }
    }
}

extension FileBlockDevice {
    /// The device's write stamp now; nil for a block device whose counters cannot be read.
    public func stamp() throws -> WriteStamp? {
        let info = try FileBlockDevice.system("fstat", name) { try descriptor.stat() }
        switch kind {
        case .regularFile:
            return .file(WriteStamp.FileTimes(modifiedSeconds: Int64(info.st_mtim.tv_sec), modifiedNanoseconds: Int64(info.st_mtim.tv_nsec),
                                              size: UInt64(info.size)))
        case .blockDevice:
            return SysfsBlockDevice(device: UInt64(info.specialDeviceID.rawValue)).counters.map(WriteStamp.device)
        }
    }
}
