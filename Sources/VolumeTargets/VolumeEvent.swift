/// Something that happened to a volume that its operator should hear about.
public enum VolumeEvent: Sendable, Equatable {
    case snapshotInvalidated(snapshot: String, reason: String)
    case snapshotOverflowed(snapshot: String)
    case mergeProgress(snapshot: String, remainingExceptions: Int, totalExceptions: Int)
    case mergeFinished(snapshot: String)
    case mergeFailed(snapshot: String, reason: String)
}
