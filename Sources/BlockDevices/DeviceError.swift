import SystemPackage

/// Why a device operation failed. Every case names the device; system failures carry the errno.
public enum DeviceError: Error, Equatable, CustomStringConvertible {
    /// A system call failed.
    case system(operation: String, device: String, errno: Errno)
    /// An access reached past the end of the device.
    case outOfRange(device: String, offset: UInt64, length: UInt64, size: UInt64)
    /// The device ended before a read was satisfied (it shrank, or a file was truncated).
    case unexpectedEnd(device: String, offset: UInt64)
    /// A write to a device opened read-only.
    case readOnly(device: String)
    /// An offset, length or buffer not aligned for a device opened with O_DIRECT.
    case misaligned(device: String, offset: UInt64, length: Int, alignment: Int)
    /// The path names something that is neither a regular file nor a block device.
    case notADevice(device: String)
    /// An injected failure from `FaultInjectingDevice`.
    case injected(device: String, operation: String, offset: UInt64)
    /// Another program writes the image, or forbids writing it (qemu's image locks).
    case heldByAnother(device: String, holder: String)

    /// The errno this failure corresponds to (EIO for injected faults).
    public var errno: Errno {
        switch self {
        case .system(_, _, let errno): return errno
        case .outOfRange: return .invalidArgument
        case .unexpectedEnd, .injected: return .ioError
        case .readOnly: return .readOnlyFileSystem
        case .misaligned: return .invalidArgument
        case .notADevice: return .invalidArgument
        case .heldByAnother: return .resourceTemporarilyUnavailable
        }
    }

    public var description: String {
        switch self {
        case let .system(operation, device, errno):
            return "\(device): \(operation) failed: \(errno)"
        case let .outOfRange(device, offset, length, size):
            return "\(device): \(length) bytes at offset \(offset) reach past the end (size \(size))"
        case let .unexpectedEnd(device, offset):
            return "\(device): device ended unexpectedly at offset \(offset)"
        case let .readOnly(device):
            return "\(device): device is read-only"
        case let .misaligned(device, offset, length, alignment):
            return "\(device): \(length) bytes at offset \(offset) not aligned to \(alignment) for direct I/O"
        case let .notADevice(device):
            return "\(device): not a regular file or block device"
        case let .injected(device, operation, offset):
            return "\(device): injected \(operation) error at offset \(offset)"
        case let .heldByAnother(device, holder):
            return "\(device): in use by \(holder), which writes it or forbids writing it (qemu's image lock): stop it first"
        }
    }
}
