import Foundation

/// A block device's directory in sysfs, and what snapvol reads there: its write counters and
/// its identity.
struct SysfsBlockDevice {
    let directory: String

    /// The device numbered `device` (`st_rdev`).
    init(device: UInt64) {
        let major = ((device >> 8) & 0xfff) | ((device >> 32) & ~0xfff)
        let minor = (device & 0xff) | ((device >> 12) & ~0xff)
        directory = "/sys/dev/block/\(major):\(minor)"
    }

    private init(directory: String) { self.directory = directory }

    /// The trimmed contents of the attribute `name`; nil if absent or empty.
    func attribute(_ name: String) -> String? {
        guard let text = ProcFile.text("\(directory)/\(name)")?.trimmingCharacters(in: .whitespacesAndNewlines), !text.isEmpty else { return nil }
        return text
    }

    /// Whether this is a partition (whose disk is the parent directory).
    private var disk: SysfsBlockDevice? { attribute("partition") == nil ? nil : SysfsBlockDevice(directory: "\(directory)/..") }

    /// The sectors written and discarded through the device, with the boot and device instance
    /// they count in; nil if sysfs or the boot id cannot be read.
    var counters: WriteStamp.DeviceCounters? {
        guard let bootID = ProcFile.text("/proc/sys/kernel/random/boot_id")?.trimmingCharacters(in: .whitespacesAndNewlines),
              !bootID.isEmpty, let stat = attribute("stat") else { return nil }
        // Fields (Documentation/block/stat.rst): 7 sectors written, 14 sectors discarded
        // (Linux 4.18 and later).
        let fields = stat.split(whereSeparator: \.isWhitespace).compactMap { UInt64($0) }
        guard fields.count >= 11 else { return nil }
        let sequence = (attribute("diskseq") ?? disk?.attribute("diskseq")).flatMap { UInt64($0) }
        return WriteStamp.DeviceCounters(bootID: bootID, diskSequence: sequence, sectorsWritten: fields[6],
                                         sectorsDiscarded: fields.count >= 14 ? fields[13] : 0)
    }

    /// What the device is, whatever node names it: a loop device's backing file, a
    /// device-mapper device's uuid (a logical volume's) or name, a disk's WWID or serial, a
    /// partition's disk and number. Nil when sysfs offers none of these.
    var identity: String? {
        if let disk, let number = attribute("partition") {
            return disk.identity.map { "\($0), partition \(number)" }
        }
        if let backing = attribute("loop/backing_file") {
            let offset = attribute("loop/offset").flatMap { UInt64($0) } ?? 0
            return "loop over \(backing)" + (offset == 0 ? "" : " at offset \(offset)")
        }
        if let uuid = attribute("dm/uuid") ?? attribute("dm/name") { return "device-mapper \(uuid)" }
        if let wwid = attribute("wwid") ?? attribute("device/wwid") { return "wwid \(wwid)" }
        if let serial = attribute("serial") ?? attribute("device/serial") { return "serial \(serial)" }
        return nil
    }
}

extension FileBlockDevice {
    /// What the block device is, whatever node names it (`SysfsBlockDevice.identity`): a name
    /// like `/dev/sdb` or `/dev/loop3` can name another device after a restart or a detach.
    /// Nil for a regular file, and for a block device sysfs says nothing stable of.
    public func identity() throws -> String? {
        guard kind == .blockDevice else { return nil }
        let info = try FileBlockDevice.system("fstat", name) { try descriptor.stat() }
        return SysfsBlockDevice(device: UInt64(info.specialDeviceID.rawValue)).identity
    }
}
