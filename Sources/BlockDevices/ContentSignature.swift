import CBlkid
#if canImport(Glibc)
import Glibc
#endif
import SystemPackage

/// A known on-disk format that libblkid found on a device or file: a filesystem, a partition
/// table, a RAID or volume-manager member, swap, an encrypted volume.
///
/// Invariant: `type` is libblkid's name for the format (`ext4`, `xfs`, `LVM2_member`, `swap`,
/// `crypto_LUKS`, or for a partition table `dos`, `gpt`); `usage` is libblkid's class of a
/// superblock (`filesystem`, `raid`, `crypto`, `other`) and nil for a partition table.
public struct ContentSignature: Sendable, Equatable, CustomStringConvertible {
    public let type: String
    public let usage: String?
    public let label: String?

    public init(type: String, usage: String?, label: String?) {
        (self.type, self.usage, self.label) = (type, usage, label)
    }

    /// More than one format claims the device, so libblkid names none of them.
    public static let ambiguous = ContentSignature(type: "ambiguous", usage: nil, label: nil)

    public var description: String {
        if self == .ambiguous { return "signatures of more than one format" }
        let named = label.map { " labelled '\($0)'" } ?? ""
        switch usage {
        case "filesystem": return "\(article(type)) \(type) filesystem\(named)"
        case "raid": return "\(article(type)) \(type) signature (a RAID or volume-manager member)\(named)"
        case "crypto": return "\(article(type)) \(type) encrypted volume\(named)"
        case nil: return "\(article(type)) \(type) partition table"
        default: return "\(article(type)) \(type) signature\(named)"
        }
    }

    private func article(_ word: String) -> String {
        "aeiouAEIOU".contains(word.first ?? "x") ? "an" : "a"
    }
}

extension FileBlockDevice {
    /// The format libblkid recognises on the device, or nil when it finds none. Only reads.
    public func contentSignature() throws -> ContentSignature? {
        guard let probe = blkid_new_probe() else { throw failure("blkid_new_probe", .noMemory) }
        defer { blkid_free_probe(probe) }
        guard blkid_probe_set_device(probe, descriptor.rawValue, 0, 0) == 0 else { throw failure("blkid_probe_set_device") }
        blkid_probe_enable_superblocks(probe, 1)
        blkid_probe_set_superblocks_flags(probe, snapvol_blkid_superblock_flags())
        blkid_probe_enable_partitions(probe, 1)
        switch blkid_do_safeprobe(probe) {
        case 1: return nil
        case -2: return .ambiguous
        case 0: break
        default: throw failure("blkid_do_safeprobe")
        }
        if let table = value("PTTYPE", of: probe) { return ContentSignature(type: table, usage: nil, label: nil) }
        guard let type = value("TYPE", of: probe) else { return nil }
        return ContentSignature(type: type, usage: value("USAGE", of: probe) ?? "other", label: value("LABEL", of: probe))
    }

    private func value(_ name: String, of probe: blkid_probe) -> String? {
        var data: UnsafePointer<CChar>?
        guard blkid_probe_lookup_value(probe, name, &data, nil) == 0, let data else { return nil }
        return String(cString: data)
    }

    private func failure(_ operation: String, _ fallback: Errno = .ioError) -> DeviceError {
        let code = Glibc.errno
        return .system(operation: operation, device: name, errno: code == 0 ? fallback : Errno(rawValue: code))
    }
}
