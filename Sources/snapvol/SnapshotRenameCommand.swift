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
        @Argument(help: "The snapshot's name.") var name: String
        @Argument(help: "Its new name.") var newName: String
        @Flag(help: "Disconnect the NBD clients that have it open.") var force = false

        func run() async throws {
            try await guarded {
                try await options.withController("snapvol snapshot rename") { try await $0.renameSnapshot(name, to: newName, force: force) }
                emit("renamed snapshot \(name) to \(newName)")
            }
        }
    }
}
