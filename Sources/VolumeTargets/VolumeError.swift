/// Why an I/O or command on a volume failed. Every case names the volume.
public enum VolumeError: Error, Equatable, CustomStringConvertible {
    /// The snapshot was invalidated (COW full, or a copy or metadata write failed).
    case invalid(volume: String, reason: String)
    /// A write to the snapshot found its COW store full; reads still work.
    case overflow(volume: String)
    /// The snapshot is being merged into its origin; its own I/O is refused.
    case merging(volume: String)
    /// The snapshot is not attached to an origin.
    case inactive(volume: String)
    /// An access outside the volume.
    case outOfRange(volume: String, offset: UInt64, length: UInt64, size: UInt64)
    /// The operation is not possible in the volume's present state.
    case refused(volume: String, reason: String)

    public var description: String {
        switch self {
        case let .invalid(volume, reason): return "\(volume): snapshot is invalid (\(reason))"
        case let .overflow(volume): return "\(volume): snapshot COW store is full (overflow); snapshot writes fail, reads work"
        case let .merging(volume): return "\(volume): snapshot is being merged into its origin"
        case let .inactive(volume): return "\(volume): snapshot is not active"
        case let .outOfRange(volume, offset, length, size):
            return "\(volume): \(length) bytes at offset \(offset) reach past the end (size \(size))"
        case let .refused(volume, reason): return "\(volume): \(reason)"
        }
    }
}
