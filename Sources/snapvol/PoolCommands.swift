import ArgumentParser
import Controller

struct PoolCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pool", abstract: "Manage the pool itself.", subcommands: [Init.self, Check.self, Settings.self])

    struct Init: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create the pool (refused if one exists).")
        @OptionGroup var options: PoolOptions

        func run() async throws {
            try await guarded {
                try Controller.initPool(options.location)
                emit("created pool \(options.location.directory)")
            }
        }
    }
}

extension PoolCommand {
    /// The pool's settings, kept in its registry: shown, or changed by the options given.
    struct Settings: AsyncParsableCommand, ForwardableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show or change the pool's settings (autoextend of file-backed COWs, applied by 'snapvol serve').",
            discussion: """
                Like lvm.conf's snapshot_autoextend_threshold and _percent. A running server applies a change \
                within a second; its own --autoextend-* flags, when given, take precedence.
                """)
        @OptionGroup var options: PoolOptions
        @Option(help: ArgumentHelp("Grow a file-backed COW when it is this full: 50-99, or off.", valueName: "percent|off"))
        var autoextendThreshold: String?
        @Option(help: ArgumentHelp("Grow it by this percent of its size: 1-1000.", valueName: "percent")) var autoextendPercent: Double?

        func run() async throws {
            try await guarded {
                let settings = try await options.withController("snapvol pool settings") { controller -> AutoextendSettings? in
                    let current = controller.registry.autoextend
                    guard autoextendThreshold != nil || autoextendPercent != nil else { return current }
                    let threshold = try autoextendThreshold.map(Self.threshold) ?? current?.thresholdPercent
                    let changed = try AutoextendSettings(thresholdPercent: threshold,
                                                         growPercent: autoextendPercent ?? current?.growPercent ?? AutoextendSettings.defaultGrowPercent)
                    try await controller.setAutoextend(changed)
                    return changed
                }
                emit("autoextend: \(settings?.description ?? "off")")
            }
        }

        /// "off", or a percentage.
        static func threshold(_ text: String) throws -> Double? {
            if text == "off" { return nil }
            guard let value = Double(text) else { throw ControllerError.refused("invalid --autoextend-threshold '\(text)': 50-99, or off") }
            return value
        }
    }
}

struct OriginCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "origin", abstract: "Register, resize, rename, relocate and unregister origin volumes.",
        subcommands: [Add.self, Resize.self, Rename.self, Relocate.self, Remove.self])

    struct Add: AsyncParsableCommand, ForwardableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Register an origin: a regular file or block device (a sparse file is created if --size is given).",
            discussion: "One that holds an exception store (a snapshot's COW or a spare area, which writes to it as an origin would destroy) is refused unless --force.")
        @OptionGroup var options: PoolOptions
        @Argument(help: "The volume name.") var name: String
        @Option(help: "The origin's file or block device.") var path: String
        @Option(help: "Create a new sparse file of this size.") var size: String?
        @Flag(help: "Register it even if it holds an exception store.") var force = false

        func run() async throws {
            try await guarded {
                try await options.withController("snapvol origin add") { controller in
                    try await controller.addOrigin(name: name, path: absolutePath(path), size: try bytes(size), force: force)
                }
                emit("added origin \(name)")
                if size == nil, let format = ImageFormat.detect(at: absolutePath(path)) {
                    printWarning("origin \(name) holds a \(format) image: snapvol snapshots and exports its bytes as they are, so clients must open the export as \(format) (or convert the file to raw first: qemu-img convert -O raw)")
                }
            }
        }
    }

    struct Resize: AsyncParsableCommand, ForwardableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Grow or shrink an origin with no snapshots (a file to --size; a block device to its own new size).",
            discussion: """
                Without --size the device's size is read again: after 'lvextend', or 'losetup --set-capacity' on a loop \
                device. Shrinking needs --force (the data past the new end is gone). Refused while an NBD client of \
                'snapvol serve' has it open, unless --force (it knows only the old size).
                """)
        @OptionGroup var options: PoolOptions
        @Argument(help: "The origin's name.", completion: VolumeCompletion.origins) var name: String
        @Option(help: "The new size of the origin's file.") var size: String?
        @Flag(help: "Allow shrinking; disconnect the NBD clients that have it open.") var force = false

        func run() async throws {
            try await guarded {
                let resize = try await options.withController("snapvol origin resize") {
                    try await $0.resizeOrigin(name: name, size: try bytes(size), force: force)
                }
                let (old, new) = (ByteSize.describe(resize.old), ByteSize.describe(resize.new))
                emit(resize.old == resize.new ? "origin \(name) is already \(new)" : "resized origin \(name) from \(old) to \(new)")
            }
        }
    }

    struct Rename: AsyncParsableCommand, ForwardableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Rename an origin (its path and its snapshots stay as they are).",
            discussion: """
                Refused while an NBD client of 'snapvol serve' has it open, unless --force (the export's name \
                changes). Its snapshots' clients stay connected.
                """)
        @OptionGroup var options: PoolOptions
        @OptionGroup var rename: RenameArguments

        func run() async throws {
            try await rename.run("origin", options) { try await $0.renameOrigin(rename.name, to: rename.newName, force: rename.force) }
        }
    }

    struct Remove: AsyncParsableCommand, ForwardableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Unregister an origin (refused while it has snapshots). Its data is left untouched.",
            discussion: "Refused while an NBD client of 'snapvol serve' has it open, unless --force.")
        @OptionGroup var options: PoolOptions
        @Argument(help: "The origin's name.", completion: VolumeCompletion.origins) var name: String
        @Flag(help: "Disconnect the NBD clients that have it open.") var force = false

        func run() async throws {
            try await guarded {
                try await options.withController("snapvol origin remove") { try await $0.removeOrigin(name: name, force: force) }
                emit("removed origin \(name)")
            }
        }
    }
}
