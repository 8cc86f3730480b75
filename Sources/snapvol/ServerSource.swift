import Controller
import Foundation
import TerminalUI

/// The TUI attached to a running server over its control socket: figures come from the
/// server's `status --json`, commands are sent as the equivalent command lines.
struct ServerSource: PoolSource {
    let location: PoolLocation

    var readOnly: Bool { false }
    var poolDirectory: String { location.directory }

    /// Whether a server answers on the pool's control socket.
    static func available(_ location: PoolLocation) -> Bool {
        ControlClient.exchange(["status", "--json", "--pool", location.directory], location: location) { _, _ in } == 0
    }

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
    /// The server's events (`events --json`).
    func recentEvents() -> [EventJournal.Entry] {
        guard let data = try? run(["events", "--json"]) else { return [] }
        return (try? JSONDecoder().decode([EventJournal.Entry].self, from: data)) ?? []
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
    func mergeSnapshots(names: [String], force: Bool) async throws {
        _ = try run(["snapshot", "merge"] + names + ["--no-progress"] + (force ? ["--force"] : []))
    }
    func extendSnapshot(name: String, cowSize: UInt64) async throws { _ = try run(["snapshot", "extend", name, "--cow-size", "\(cowSize)"]) }
    func resizeOrigin(name: String, size: UInt64) async throws { _ = try run(["origin", "resize", name, "--size", "\(size)"]) }
    func rename(_ kind: VolumeRow.Kind, _ name: String, to newName: String, force: Bool) async throws {
        guard kind != .remap else { throw ControllerError.refused("remap volumes are not renamed") }
        _ = try run([kind == .origin ? "origin" : "snapshot", "rename", name, newName] + (force ? ["--force"] : []))
    }
}
