/// The life-cycle state of a snapshot, as status reports it.
public enum SnapshotCondition: Sendable, Equatable, CustomStringConvertible {
    /// Attached and receiving copies.
    case active
    /// Invalidated: all I/O fails; only deletion is left.
    case invalid(reason: String)
    /// A snapshot write found no room: writes fail, reads work, origin copies continue while room lasts.
    case overflow
    /// Being merged into its origin.
    case merging
    /// A merge stopped on an error; re-running the merge resumes it.
    case mergeFailed(reason: String)
    /// Detached from its origin.
    case inactive

    /// The single word used by `status` (`active`, `invalid`, `overflow`, `merging`, `merge-failed`, `inactive`).
    public var word: String {
        switch self {
        case .active: return "active"
        case .invalid: return "invalid"
        case .overflow: return "overflow"
        case .merging: return "merging"
        case .mergeFailed: return "merge-failed"
        case .inactive: return "inactive"
        }
    }

    public var description: String {
        switch self {
        case .invalid(let reason): return "invalid (\(reason))"
        case .mergeFailed(let reason): return "merge-failed (\(reason))"
        default: return word
        }
    }

    var readable: Bool {
        switch self {
        case .active, .overflow: return true
        default: return false
        }
    }
}
