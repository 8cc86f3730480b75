/// Why a pool command was refused. Each case renders as one line naming the thing at fault.
public enum ControllerError: Error, Equatable, CustomStringConvertible {
    case badSize(String)
    case noPool(String)
    case permissionDenied(pool: String, owner: String, mode: String)
    case poolExists(String)
    case locked(pool: String, holder: String)
    case corruptRegistry(path: String, reason: String)
    case badName(String)
    case duplicateName(String)
    case unknownVolume(String)
    case unknownOrigin(String)
    case unknownSnapshot(String)
    case originHasSnapshots(origin: String, snapshots: [String])
    case pathInUse(path: String, by: String)
    case pathMissing(String)
    case pathExists(String)
    case badChunkSize(String)
    case cowTooSmall(path: String, bytes: UInt64, chunkBytes: Int)
    case cowHoldsStore(String)
    case wouldOverwrite(path: String, holds: String, role: String, isFile: Bool)
    case notResizable(String)
    case cannotShrink(path: String, current: UInt64, requested: UInt64)
    case inactiveVolume(name: String, reason: String)
    case volumeInUse(name: String, clients: Int)
    case refused(String)

    public var description: String {
        switch self {
        case .badSize(let text): return "invalid size '\(text)': use bytes, a K/M/G/T suffix (binary) or s for 512-byte sectors"
        case .noPool(let dir): return "no pool at \(dir): run 'snapvol pool init' first"
        case let .permissionDenied(pool, owner, mode): return "permission denied: pool \(pool) belongs to \(owner) (mode \(mode)); run as its owner"
        case .poolExists(let dir): return "a pool already exists at \(dir)"
        case let .locked(pool, holder): return "pool \(pool) is in use by \(holder)"
        case let .corruptRegistry(path, reason): return "corrupt pool registry \(path): \(reason)"
        case .badName(let name):
            return "invalid volume name '\(name)': use 1-64 letters, digits, '.', '_' or '-', not starting with '-' or '.'"
        case .duplicateName(let name): return "a volume named '\(name)' already exists in this pool"
        case .unknownVolume(let name): return "no volume named '\(name)' in this pool"
        case .unknownOrigin(let name): return "no origin named '\(name)' in this pool"
        case .unknownSnapshot(let name): return "no snapshot named '\(name)' in this pool"
        case let .originHasSnapshots(origin, snapshots):
            return "origin '\(origin)' still has snapshots: \(snapshots.joined(separator: ", "))"
        case let .pathInUse(path, by): return "\(path) is already used by '\(by)'"
        case .pathMissing(let path): return "\(path) does not exist (give --size to create a file)"
        case .pathExists(let path): return "\(path) already exists"
        case .badChunkSize(let text): return "invalid chunk size \(text): must be a power of two from 4 KiB to 1 GiB"
        case let .cowTooSmall(path, bytes, chunkBytes):
            return "COW \(path) of \(bytes) bytes is too small: at least 3 chunks (\(3 * chunkBytes) bytes) are needed"
        case let .wouldOverwrite(path, holds, role, isFile):
            let instead = isFile ? "give a path that does not exist yet (snapvol creates the file)" : "check it is the device you meant and wipe it (wipefs -a)"
            return "\(path) holds \(holds), which formatting it as \(role) would destroy: \(instead), or add --force to overwrite it"
        case .cowHoldsStore(let path):
            return "\(path) already holds a snapshot COW store: use 'snapshot attach' to adopt it, or --force to overwrite it"
        case .notResizable(let path): return "\(path) is not a regular file: only file-backed COW devices can be extended"
        case let .cannotShrink(path, current, requested):
            return "\(path) is \(current) bytes: the new size \(requested) must be larger"
        case let .inactiveVolume(name, reason): return "volume '\(name)' is not active: \(reason)"
        case let .volumeInUse(name, clients):
            let them = clients == 1 ? "it" : "them"
            return "volume '\(name)' is in use by \(VolumeClaims.describe(clients)): disconnect \(them), or use --force to cut \(them) off"
        case .refused(let text): return text
        }
    }
}
