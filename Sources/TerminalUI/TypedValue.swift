import Controller

/// A value typed at the prompt for one volume: a new size for a snapshot's COW or for an origin,
/// a new name for a snapshot or an origin, or the path an inactive one's device moved to. The prompt line shows what is typed so far.
struct TypedValue: Sendable {
    enum Purpose: Sendable {
        case cowSize
        /// `current`: the origin's size now, shown in the prompt.
        case originSize(current: UInt64)
        /// `force`: the volume has NBD clients, whom the rename disconnects.
        case name(kind: VolumeRow.Kind, force: Bool)
        /// Where an inactive volume's device (an origin's, a snapshot's COW) now is.
        case path(kind: VolumeRow.Kind)
    }

    let purpose: Purpose
    let target: String
    var text = ""

    var prompt: String {
        switch purpose {
        case .cowSize: return "new COW size for \(target): \(text)_"
        case .originSize(let current): return "new size for origin \(target) (now \(ByteSize.describe(current))): \(text)_"
        case .name(let kind, let force):
            let what = kind == .origin ? "origin " : ""
            return "new name for \(what)\(target)\(force ? " (disconnects its NBD clients)" : ""): \(text)_"
        case .path(let kind):
            return kind == .origin ? "where origin \(target)'s device is now: \(text)_" : "where the COW of \(target) is now: \(text)_"
        }
    }

    var cancelled: String {
        switch purpose {
        case .cowSize: return "extend cancelled"
        case .originSize: return "resize cancelled"
        case .name: return "rename cancelled"
        case .path: return "relocate cancelled"
        }
    }
}
