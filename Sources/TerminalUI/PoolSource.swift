import Controller
import Foundation

/// Where the UI gets its figures and sends its commands: the in-process controller (owning the
/// pool), or a read-only view of the pool on disk that never takes the lock.
public protocol PoolSource: Sendable {
    var readOnly: Bool { get }
    var poolDirectory: String { get }
    func status() throws -> PoolStatus
    func registry() throws -> Registry
    func recentEvents() -> [EventJournal.Entry]
    func chunkMap(snapshot: String, cells: Int) -> [Double]?
    /// Creates one snapshot, or several at one instant (a consistent group).
    func createSnapshots(_ requests: [SnapshotRequest]) async throws
    /// Deletes snapshots in one command (all checked first). `force`: disconnect the NBD clients
    /// that have them open (refused otherwise).
    func deleteSnapshots(names: [String], force: Bool) async throws
    /// Merges snapshots (one per origin) in one command, all checked first.
    func mergeSnapshots(names: [String], force: Bool) async throws
    func extendSnapshot(name: String, cowSize: UInt64) async throws
    /// Grows (or shrinks, refused without the CLI's --force) an origin with no snapshots.
    func resizeOrigin(name: String, size: UInt64) async throws
    /// Renames an origin or a snapshot; `force`: disconnect the NBD clients that have it open.
    func rename(_ kind: VolumeRow.Kind, _ name: String, to newName: String, force: Bool) async throws
    /// Clears the suspect mark of snapshots (`snapshot trust`).
    func trustSnapshots(names: [String]) async throws
    /// Points an inactive origin or snapshot at the path where its device now is, and activates
    /// it (`origin relocate`, `snapshot relocate`); a remap volume, with two devices, is refused.
    func relocate(_ kind: VolumeRow.Kind, _ name: String, to path: String) async throws
}

/// The one refusal every source gives for relocating a remap volume from the TUI.
public func remapRelocationRefusal(_ name: String) -> ControllerError {
    .refused("a remap volume has two devices: use 'snapvol remap relocate \(name) --device PATH --spare PATH'")
}

/// The pool driven in this process.
public struct ControllerSource: PoolSource {
    public let controller: Controller

    public init(controller: Controller) { self.controller = controller }

    public var readOnly: Bool { false }
    public var poolDirectory: String { controller.location.directory }
    public func status() throws -> PoolStatus { try controller.status() }
    public func registry() throws -> Registry { controller.registry }
    public func recentEvents() -> [EventJournal.Entry] { controller.events.recent }
    public func chunkMap(snapshot: String, cells: Int) -> [Double]? { controller.chunkMap(snapshot: snapshot, cells: cells) }
    public func createSnapshots(_ requests: [SnapshotRequest]) async throws { try await controller.createSnapshots(requests) }
    public func deleteSnapshots(names: [String], force: Bool) async throws { try await controller.deleteSnapshots(names: names, force: force) }
    public func mergeSnapshots(names: [String], force: Bool) async throws { try await controller.mergeSnapshots(names: names, force: force) }
    public func extendSnapshot(name: String, cowSize: UInt64) async throws { try await controller.extendSnapshot(name: name, cowSize: cowSize) }
    public func resizeOrigin(name: String, size: UInt64) async throws { try await controller.resizeOrigin(name: name, size: size) }
    public func rename(_ kind: VolumeRow.Kind, _ name: String, to newName: String, force: Bool) async throws {
        switch kind {
        case .origin: try await controller.renameOrigin(name, to: newName, force: force)
        case .snapshot: try await controller.renameSnapshot(name, to: newName, force: force)
        case .remap: throw ControllerError.refused("remap volumes are not renamed")
        }
    }
    public func trustSnapshots(names: [String]) async throws { try await controller.trustSnapshots(names: names) }
    public func relocate(_ kind: VolumeRow.Kind, _ name: String, to path: String) async throws {
        switch kind {
        case .origin: _ = try await controller.relocateOrigin(name, to: path)
        case .snapshot: try await controller.relocateSnapshot(name, cowPath: path)
        case .remap: throw remapRelocationRefusal(name)
        }
    }
}

/// The pool as it is on disk, read without the lock and without opening anything for writing.
public struct DiskSource: PoolSource {
    public let location: PoolLocation

    public init(location: PoolLocation) { self.location = location }

    public var readOnly: Bool { true }
    public var poolDirectory: String { location.directory }
    public func status() throws -> PoolStatus { try PoolObserver.status(location) }
    public func registry() throws -> Registry { try PoolObserver.registry(location) }
    public func recentEvents() -> [EventJournal.Entry] { (try? PoolObserver.events(location)) ?? [] }
    public func chunkMap(snapshot: String, cells: Int) -> [Double]? { nil }
    public func createSnapshots(_ requests: [SnapshotRequest]) async throws { throw Self.refusal }
    public func deleteSnapshots(names: [String], force: Bool) async throws { throw Self.refusal }
    public func mergeSnapshots(names: [String], force: Bool) async throws { throw Self.refusal }
    public func extendSnapshot(name: String, cowSize: UInt64) async throws { throw Self.refusal }
    public func resizeOrigin(name: String, size: UInt64) async throws { throw Self.refusal }
    public func rename(_ kind: VolumeRow.Kind, _ name: String, to newName: String, force: Bool) async throws { throw Self.refusal }
    public func trustSnapshots(names: [String]) async throws { throw Self.refusal }
    public func relocate(_ kind: VolumeRow.Kind, _ name: String, to path: String) async throws { throw Self.refusal }

    static let refusal = ControllerError.refused("read-only mode: no changes are made")
}
