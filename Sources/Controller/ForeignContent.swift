import BlockDevices
import ExceptionMachinery

/// What an existing device or file holds that formatting it as a COW or a spare area would
/// destroy, like `mkfs` and `pvcreate` look before they write.
///
/// Invariant: `found(on:)` looks in this order and reports the first it finds: an exception
/// store (a snapshot's COW, a spare area: dm-snapshot's magic), a format libblkid recognises,
/// a disk-image container, and for a regular file any written data. A block device holding
/// none of these is taken as free, as `dmsetup` takes any device (a new disk or logical volume
/// holds whatever was there before).
enum ForeignContent: Equatable, CustomStringConvertible {
    case exceptionStore
    case signature(ContentSignature)
    case image(format: String)
    case data(bytes: UInt64)

    static func found(on device: FileBlockDevice) async throws -> ForeignContent? {
        // Measured before anything is read: ext4 reports the cached pages of a preallocated
        // (unwritten) extent as data, and the probes below would cache some.
        let written = device.kind == .regularFile ? try device.dataExtents(in: 0..<device.size).reduce(0) { $0 + UInt64($1.count) } : 0
        if try await holdsExceptionStore(device) { return .exceptionStore }
        if let signature = try device.contentSignature() { return .signature(signature) }
        if let format = ImageFormat.detect(at: device.name) { return .image(format: format) }
        return written > 0 ? .data(bytes: written) : nil
    }

    /// Whether the device starts with dm-snapshot's magic (a COW or a spare area).
    static func holdsExceptionStore(_ device: any BlockDevice) async throws -> Bool {
        device.size >= 4 ? try await device.readBytes(at: 0, count: 4) == CowLayout.magicBytes : false
    }

    var description: String {
        switch self {
        case .exceptionStore: return "an exception store (a snapshot's COW or a spare area)"
        case .signature(let signature): return signature.description
        case .image(let format): return "a \(format) disk image"
        case .data(let bytes): return "\(ByteCount.describe(bytes)) of written data"
        }
    }
}
