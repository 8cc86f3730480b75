import Controller

/// A value typed at the prompt for one volume: a new size for a snapshot's COW or for an origin,
/// or a new name for a snapshot or an origin. The prompt line shows what is typed so far.
struct TypedValue: Sendable {
    enum Purpose: Sendable {
        case cowSize
        /// `current`: the origin's size now, shown in the prompt.
        case originSize(current: UInt64)
        /// `force`: the volume has NBD clients, whom the rename disconnects.
        case name(kind: VolumeRow.Kind, force: Bool)
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
        }
    }

    var cancelled: String {
        switch purpose {
        case .cowSize: return "extend cancelled"
        case .originSize: return "resize cancelled"
        case .name: return "rename cancelled"
        }
    }
}
