import ArgumentParser
import Controller

extension OriginCommand {
    struct Relocate: AsyncParsableCommand, ForwardableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Point an origin that cannot be opened at its device's new path.",
            discussion: """
                After a restart gave its block device another name (/dev/sdc where it was /dev/sdb), or its file \
                was moved. A block device must be the one the origin was on (its identity: a loop device's file, \
                a logical volume's uuid, a disk's WWID or serial). The origin and its snapshots are then \
                activated. A file whose modification time or size differs from when snapvol last let it go \
                marks the snapshots suspect (a copy that did not keep its time, say). Refused for an origin \
                that is active.
                """)
        @OptionGroup var options: PoolOptions
        @OptionGroup var relocation: RelocationArguments

        func run() async throws {
            try await relocation.run("origin", options) { try await $0.relocateOrigin(relocation.name, to: $1, adoptingDevice: relocation.adoptDevice) }
        }
    }
}

extension SnapshotCommand {
    struct Relocate: AsyncParsableCommand, ForwardableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Point a snapshot whose COW cannot be opened at the COW's new path.",
            discussion: """
                After a restart gave its block device another name, or its COW file was moved. The path must \
                hold a snapshot store of the snapshot's chunk size and, for a block device, be the device the \
                COW was on (its identity). The snapshot then joins its origin if that is active. A snapshot \
                given up meanwhile (its origin written while its COW was away) stays invalid. Refused for a \
                snapshot that is active.
                """)
        @OptionGroup var options: PoolOptions
        @OptionGroup var relocation: RelocationArguments

        func run() async throws {
            try await relocation.run("snapshot", options) { try await $0.relocateSnapshot(relocation.name, cowPath: $1, adoptingDevice: relocation.adoptDevice) }
        }
    }
}

/// NAME PATH of `origin relocate` and `snapshot relocate`.
struct RelocationArguments: ParsableArguments {
    @Argument(help: "The volume's name.", completion: VolumeCompletion.names([.origins, .snapshots])) var name: String
    @Argument(help: "Its device's or file's new path.", completion: .file()) var path: String
    @Flag(help: AdoptDevice.help) var adoptDevice = false

    /// Runs `relocate` on the pool with the path made absolute (against the command's working
    /// directory, also when forwarded) and says where the volume (`kind`: origin or snapshot)
    /// is now and its state.
    func run(_ kind: String, _ options: PoolOptions, _ relocate: (Controller, String) async throws -> String) async throws {
        try await guarded {
            let path = absolutePath(self.path)
            let state = try await options.withController("snapvol \(kind) relocate") { try await relocate($0, path) }
            emit("relocated \(kind) \(name) to \(path): \(state)")
        }
    }
}

/// `--adopt-device` of the relocate commands.
enum AdoptDevice {
    static let help = ArgumentHelp(
        "Take the block device at PATH as the volume's own although its identity is not the one recorded.",
        discussion: "Only when you know it is the same storage under another identity (a loop device set up over another path to the same file, say); its identity is recorded anew. PATH may be the volume's own path.")
}
