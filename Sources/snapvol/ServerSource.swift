import Controller
import Foundation
import Synchronization
import TerminalUI

/// The TUI attached to a running server over its control socket: figures come from the
/// server's `status --json`, commands are sent as the equivalent command lines.
struct ServerSource: PoolSource {
    let location: PoolLocation
    private let events = EventCache()

    init(location: PoolLocation) { self.location = location }

    var readOnly: Bool { false }
    var poolDirectory: String { location.directory }

    /// Whether a long-lived holder (`serve`, another TUI) answers on the pool's control socket:
    /// a TUI attaches to one, and waits for a command holding the pool to end instead.
    static func available(_ location: PoolLocation) -> Bool { ControlClient.longLivedHolderAnswers(location) }

    private func run(_ arguments: [String]) throws -> Data {
        var stdout = Data(), stderr = Data()
        let status = ControlClient.exchange(arguments + ["--pool", location.directory], location: location) { kind, payload in
            if kind == ControlProtocol.stdout { stdout.append(payload) } else { stderr.append(payload) }
        }
        guard let status else { throw ControllerError.refused("the server of \(location.directory) stopped answering") }
        guard status == 0 else {
            let message = String(decoding: stderr, as: UTF8.self).replacingOccurrences(of: "snapvol: error: ", with: "")
            throw ControllerError.refused(message.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return stdout
    }

    func status() throws -> PoolStatus { try JSONDecoder().decode(PoolStatus.self, from: try run(["status", "--json"])) }
    func registry() throws -> Registry { try PoolObserver.registry(location) }
    /// The server's events: only the new ones (`events --json --after`), since sequences go on
    /// across its restarts; all of them every `EventCache.fullEvery` refreshes, in case its log
    /// was removed and numbering began again.
    func recentEvents() -> [EventJournal.Entry] {
        let after = events.nextQuery()
        guard let new = ControlClient.events(after: after, location: location) else { return events.entries }
        return events.take(new, replacing: after == nil)
    }

    /// The server's chunk map of `snapshot` (`io map --exceptions --cells`).
    func chunkMap(snapshot: String, cells: Int) -> [Double]? {
        guard let data = try? run(["io", "map", snapshot, "--exceptions", "--cells", "\(cells)", "--json"]),
              let parts = try? JSONDecoder().decode([IOCommand.Map.Part].self, from: data) else { return nil }
        return parts.map(\.held)
    }

    /// `snapshot create` with every request's name, `--origin` and `--cow` in order; the size
    /// options are the first request's (the form gives all of them the same).
    func createSnapshots(_ requests: [SnapshotRequest]) async throws {
        guard let first = requests.first else { return }
        var arguments = ["snapshot", "create"] + requests.map(\.name)
        arguments += requests.flatMap { ["--origin", $0.origin, "--cow", $0.cowPath] }
        if let size = first.cowSize { arguments += ["--cow-size", "\(size)"] }
        if let chunk = first.chunkSize { arguments += ["--chunk-size", "\(chunk)"] }
        _ = try run(arguments)
    }

    func deleteSnapshots(names: [String], force: Bool) async throws { _ = try run(["snapshot", "delete"] + names + (force ? ["--force"] : [])) }
    func trustSnapshots(names: [String]) async throws { _ = try run(["snapshot", "trust"] + names) }
    func mergeSnapshots(names: [String], force: Bool) async throws {
        _ = try run(["snapshot", "merge"] + names + ["--no-progress"] + (force ? ["--force"] : []))
    }
    func extendSnapshot(name: String, cowSize: UInt64) async throws { _ = try run(["snapshot", "extend", name, "--cow-size", "\(cowSize)"]) }
    func resizeOrigin(name: String, size: UInt64) async throws { _ = try run(["origin", "resize", name, "--size", "\(size)"]) }
    func relocate(_ kind: VolumeRow.Kind, _ name: String, to path: String) async throws {
        guard kind != .remap else { throw remapRelocationRefusal(name) }
        _ = try run([kind == .origin ? "origin" : "snapshot", "relocate", name, path])
    }

    func rename(_ kind: VolumeRow.Kind, _ name: String, to newName: String, force: Bool) async throws {
        guard kind != .remap else { throw ControllerError.refused("remap volumes are not renamed") }
        _ = try run([kind == .origin ? "origin" : "snapshot", "rename", name, newName] + (force ? ["--force"] : []))
    }
}

/// The events an attached TUI has fetched from its server, the last `EventJournal.capacity`.
final class EventCache: Sendable {
    /// Every this many fetches, all of the server's events are fetched instead of the new ones.
    static let fullEvery = 60
    private let state = Mutex<(entries: [EventJournal.Entry], fetches: Int)>(([], 0))

    var entries: [EventJournal.Entry] { state.withLock { $0.entries } }

    /// The sequence to fetch after, or nil for a full fetch.
    func nextQuery() -> Int? {
        state.withLock { state in
            defer { state.fetches += 1 }
            return state.fetches % Self.fullEvery == 0 ? nil : state.entries.last?.sequence ?? -1
        }
    }

    /// Adds what was fetched (or, for a full fetch, replaces the cache with it); returns the cache.
    func take(_ fetched: [EventJournal.Entry], replacing: Bool) -> [EventJournal.Entry] {
        state.withLock { state in
            state.entries = replacing ? fetched : state.entries + fetched
            if state.entries.count > EventJournal.capacity { state.entries.removeFirst(state.entries.count - EventJournal.capacity) }
            return state.entries
        }
    }
}
