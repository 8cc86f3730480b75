import ArgumentParser
import Controller

extension SnapshotCommand {
    struct Rename: AsyncParsableCommand, ForwardableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Rename a snapshot (its COW path stays as it is).",
            discussion: """
                For instance to keep a snapshot from a 'snapshot prune --match' pattern. Its group's members \
                learn the new name. Refused while an NBD client of 'snapvol serve' has it open, unless --force \
                (the export's name changes).
                """)
        @OptionGroup var options: PoolOptions
        @OptionGroup var rename: RenameArguments

        func run() async throws {
            try await rename.run("snapshot", options) { try await $0.renameSnapshot(rename.name, to: rename.newName, force: rename.force) }
        }
    }
}

/// NAME NEW_NAME [--force] of `origin rename` and `snapshot rename`.
struct RenameArguments: ParsableArguments {
    @Argument(help: "The volume's name.", completion: VolumeCompletion.names([.origins, .snapshots])) var name: String
    @Argument(help: "Its new name.") var newName: String
    @Flag(help: "Disconnect the NBD clients that have it open.") var force = false

    /// Runs `rename` on the pool and says what was renamed (`kind`: origin or snapshot).
    func run(_ kind: String, _ options: PoolOptions, _ rename: (Controller) async throws -> Void) async throws {
        try await guarded {
            try await options.withController("snapvol \(kind) rename", rename)
            emit("renamed \(kind) \(name) to \(newName)")
        }
    }
}
