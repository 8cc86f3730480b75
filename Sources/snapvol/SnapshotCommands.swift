import ArgumentParser
import Controller
import Foundation

struct SnapshotCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot", abstract: "Create, adopt, delete, merge, extend, prune, rename, relocate and trust snapshots.",
        subcommands: [Create.self, Attach.self, Delete.self, Merge.self, Extend.self, Prune.self, Rename.self, Relocate.self, Trust.self])

    struct Create: AsyncParsableCommand, ForwardableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a snapshot of an origin on a COW file or block device.",
            discussion: """
                The COW defaults to 20% of the origin and the chunk size to 16 KiB (the kernel's default).

                A --cow path that does not exist becomes a new sparse file. An existing one is \
                formatted only if it holds nothing that would be lost, as mkfs and pvcreate look \
                first: one holding a snapshot store, a filesystem, a partition table or another \
                format libblkid knows, a disk image, or (a regular file) any written data is \
                refused unless --force.

                Without --cow, each COW is a new file NAME.cow in the pool directory (or in \
                --cow-dir), as the TUI and --all-origins place them.

                Several names, each with its own --origin (and --cow, if any) in the same order, create a \
                consistent group: the snapshots are taken at one instant, so a write that is in \
                one of them has every write acknowledged before it was sent in the others (as a \
                VM with several disks needs). If any of them cannot be made, none is.
                """)
        @OptionGroup var options: PoolOptions
        @Argument(help: ArgumentHelp("The snapshot's name (several: a consistent group).", valueName: "name")) var names: [String]
        @Option(help: "The origin to snapshot (once per name, in order).", completion: VolumeCompletion.origins) var origin: [String] = []
        @Option(help: "The COW file (created sparse if missing) or block device (once per name, in order; default: NAME.cow in --cow-dir).")
        var cow: [String] = []
        @Flag(help: "Snapshot every active origin at one instant: NAME-<origin> each, COW files in --cow-dir.")
        var allOrigins = false
        @Option(help: ArgumentHelp("Where new COW files go when no --cow is given (default: the pool directory).", valueName: "dir"))
        var cowDir: String?
        @Option(help: "Size of a new COW file, or a share of its origin (30%; default 20%).") var cowSize: String?
        @Option(help: "Chunk size: a power of two from 4K to 1G.") var chunkSize: String?
        @Flag(help: "Keep exceptions in memory only (lost when the pool's owner exits).") var transient = false
        @Flag(help: "Format an existing COW even if it holds data, a filesystem or a snapshot store.") var force = false
        @Option(help: "Memory for the exception table (default 64M; 'unlimited'); beyond it, parts are re-read from the COW's metadata.")
        var exceptionCache: String?

        func run() async throws {
            try await guarded {
                if transient && CommandEnvironment.current.controller == nil {
                    throw ControllerError.refused(
                        "transient snapshots live in the memory of the process that owns the pool; this command exits at once, so the snapshot would vanish (start 'snapvol serve' first: commands are then forwarded to it)")
                }
                let requests = try await options.withController("snapvol snapshot create") { controller in
                    let requests = try makeRequests(controller)
                    try await controller.createSnapshots(requests)
                    return requests
                }
                let made = requests.map { "\($0.name) of \($0.origin)" }.joined(separator: ", ")
                emit(requests.count == 1 ? "created snapshot \(made)" : "created snapshots \(made) at one instant")
            }
        }

        /// One request per name, paired in order with the --origin and --cow options; or, with
        /// --all-origins, one per active origin of `controller`'s pool.
        private func makeRequests(_ controller: Controller) throws -> [SnapshotRequest] {
            guard !names.isEmpty else { throw ValidationError("missing the snapshot's name") }
            let pairs: [(name: String, origin: String, cow: String)]
            if allOrigins {
                guard names.count == 1, origin.isEmpty, cow.isEmpty else {
                    throw ValidationError("--all-origins takes one name and no --origin or --cow (the snapshots are NAME-<origin>)")
                }
                let directory = cowDir.map(absolutePath) ?? controller.location.directory
                pairs = controller.activeOriginNames.map { origin in
                    let name = Controller.groupMemberName(names[0], origin: origin)
                    return (name, origin, Controller.defaultCowPath(of: name, in: directory))
                }
                guard !pairs.isEmpty else { throw ControllerError.refused("no active origin to snapshot") }
            } else {
                guard cowDir == nil || cow.isEmpty else { throw ValidationError("give --cow-dir or --cow, not both") }
                guard origin.count == names.count, cow.isEmpty || cow.count == names.count else {
                    throw ValidationError("\(Wording.counted(names.count, "name")) but \(Wording.counted(origin.count, "--origin")) and \(Wording.counted(cow.count, "--cow")): give one --origin per name, and one --cow per name or none, in order")
                }
                let directory = cowDir.map(absolutePath) ?? controller.location.directory
                pairs = names.indices.map { index in
                    (names[index], origin[index], cow.isEmpty ? Controller.defaultCowPath(of: names[index], in: directory) : absolutePath(cow[index]))
                }
            }
            let chunk = try chunkBytes(chunkSize)
            let (size, percent) = try Self.cowSize(cowSize)
            let cache = try exceptionCache.map(ExceptionCacheSizes.parse)
            return pairs.map { pair in
                SnapshotRequest(name: pair.name, origin: pair.origin, cowPath: pair.cow, cowSize: size, cowPercent: percent,
                                chunkSize: chunk, transient: transient, force: force, exceptionCache: cache)
            }
        }

        /// `--cow-size`: bytes, or a share of each origin ("30%": above 0, up to 1000).
        static func cowSize(_ text: String?) throws -> (bytes: UInt64?, percent: Double?) {
            guard let text, text.hasSuffix("%") else { return (try bytes(text), nil) }
            guard let percent = Double(text.dropLast()), percent > 0, percent <= 1000 else {
                throw ControllerError.refused("invalid --cow-size '\(text)': a share of the origin from above 0% to 1000%")
            }
            return (nil, percent)
        }
    }

    struct Attach: AsyncParsableCommand, ForwardableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Adopt an existing persistent COW device (one the kernel wrote, say) as a snapshot of an origin.")
        @OptionGroup var options: PoolOptions
        @Argument(help: "The snapshot's name.") var name: String
        @Option(help: "The origin the COW device belongs to.", completion: VolumeCompletion.origins) var origin: String
        @Option(help: "The COW file or block device.") var cow: String
        @Option(help: "Memory for the exception table (default 64M; 'unlimited'); beyond it, parts are re-read from the COW's metadata.")
        var exceptionCache: String?

        func run() async throws {
            try await guarded {
                let budget = try exceptionCache.map(ExceptionCacheSizes.parse)
                let state = try await options.withController("snapvol snapshot attach") {
                    try await $0.attachSnapshot(name: name, origin: origin, cowPath: absolutePath(cow), exceptionCache: budget)
                }
                if state == "invalid" {
                    printWarning("snapshot \(name) was invalidated on disk: its reads fail; 'snapshot delete \(name)' removes it")
                }
                emit("attached snapshot \(name) of \(origin) (\(state))")
            }
        }
    }

    struct Delete: AsyncParsableCommand, ForwardableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete snapshots (their COW files too, if snapvol created them).",
            discussion: "Refused while an NBD client of 'snapvol serve' has it open, unless --force.")
        @OptionGroup var options: PoolOptions
        @Argument(help: ArgumentHelp("The snapshot's name (several: all are checked first, so a refusal deletes none).", valueName: "name"), completion: VolumeCompletion.snapshots)
        var names: [String]
        @Flag(help: "Disconnect the NBD clients that have it open.") var force = false
        @Flag(help: ArgumentHelp("Delete a snapshot being merged whose COW is lost, leaving its origin half merged.",
                                 discussion: "The origin, held back while the merge cannot go on, then holds part of the snapshot and part of its later data."))
        var abandonMerge = false

        func run() async throws {
            try await guarded {
                let kept = try await options.withController("snapvol snapshot delete") {
                    try await $0.deleteSnapshots(names: names, force: force, abandoningMerge: abandonMerge)
                }
                emit("deleted snapshot\(names.count == 1 ? "" : "s") \(names.joined(separator: ", "))")
                kept.forEach(printWarning)
            }
        }
    }

    struct Trust: AsyncParsableCommand, ForwardableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Clear the suspect mark of snapshots whose origin or COW was found changed outside snapvol.",
            discussion: """
                snapvol marks a snapshot suspect when its origin was written while no snapvol process had it \
                open (a file's modification time or size changed, a block device's write counters grew): a VM \
                or tool wrote the image directly, so the snapshot may show data written since it was taken. \
                Also when its COW holds fewer exceptions than when snapvol last let it go (restored from an \
                older copy). Trust it only when you know the change lost nothing (a 'touch'); otherwise \
                delete it. All names are checked first.
                """)
        @OptionGroup var options: PoolOptions
        @Argument(help: ArgumentHelp("The snapshot's name.", valueName: "name"), completion: VolumeCompletion.snapshots)
        var names: [String]

        func run() async throws {
            try await guarded {
                let trusted = try await options.withController("snapvol snapshot trust") { try await $0.trustSnapshots(names: names) }
                for name in names {
                    emit(trusted.contains(name) ? "trusted snapshot \(name): no longer suspect" : "snapshot \(name) was not suspect")
                }
            }
        }
    }

    struct Merge: AsyncParsableCommand, ForwardableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Roll the origin back to the snapshot; the snapshot is consumed.",
            discussion: """
                Each step is durable: an interrupted merge resumes when run again. Refused while an NBD \
                client of 'snapvol serve' has the snapshot open, unless --force; the origin's clients \
                stay connected. Several names (a group, one snapshot per origin) are all checked \
                first, so a refusal merges none; they are then merged one after another.
                """)
        @OptionGroup var options: PoolOptions
        @Argument(help: ArgumentHelp("The snapshot's name (several: one per origin).", valueName: "name"), completion: VolumeCompletion.snapshots) var names: [String]
        @Flag(help: "Do not draw a progress bar.") var noProgress = false
        @Flag(help: "Disconnect the NBD clients that have the snapshot open.") var force = false

        func run() async throws {
            try await guarded {
                try await options.withController("snapvol snapshot merge") { controller in
                    let total = UInt64(exceptionsLeft(controller))
                    let bar = ProgressBar(label: "merging \(names.joined(separator: ", "))", enabled: !noProgress && CommandEnvironment.current.interactive)
                    let watcher = Task {
                        while !Task.isCancelled {
                            let left = UInt64(exceptionsLeft(controller))
                            bar.update(done: total - min(total, left), total: total)
                            try? await Task.sleep(for: .milliseconds(100))
                        }
                    }
                    defer { watcher.cancel() }
                    try await controller.mergeSnapshots(names: names, force: force)
                    bar.update(done: total, total: total)
                    bar.finish()
                }
                emit(names.count == 1 ? "merged snapshot \(names[0]) into its origin" : "merged snapshots \(names.joined(separator: ", ")) into their origins")
            }
        }

        /// The exceptions the named snapshots still hold (a merged one is gone: none).
        private func exceptionsLeft(_ controller: Controller) -> Int {
            names.reduce(0) { sum, name in
                sum + ((try? controller.status(only: name).snapshot(named: name)?.exceptions) ?? 0)
            }
        }
    }

    struct Extend: AsyncParsableCommand, ForwardableCommand {
        static let configuration = CommandConfiguration(abstract: "Grow a file-backed COW device.")
        @OptionGroup var options: PoolOptions
        @Argument(help: "The snapshot's name.", completion: VolumeCompletion.snapshots) var name: String
        @Option(help: "The new COW size, or a share of the origin (50%).") var cowSize: String

        func run() async throws {
            try await guarded {
                let (bytes, percent) = try Create.cowSize(cowSize)
                let size = try await options.withController("snapvol snapshot extend") { controller -> UInt64 in
                    let size = try bytes ?? Self.share(percent ?? 0, of: name, in: controller)
                    try await controller.extendSnapshot(name: name, cowSize: size)
                    return size
                }
                emit("extended snapshot \(name) to \(ByteSize.describe(size))")
            }
        }

        /// `percent` of snapshot `name`'s origin, in whole chunks.
        private static func share(_ percent: Double, of name: String, in controller: Controller) throws -> UInt64 {
            guard let found = controller.registry.snapshot(named: name) else { throw ControllerError.unknownSnapshot(name) }
            let originSize = try controller.status(only: found.origin.name).origins.first?.size ?? 0
            return Controller.cowSize(percent: percent, originSize: originSize, chunkBytes: UInt64(found.snapshot.chunkSize))
        }
    }
}
