import ArgumentParser
import Controller
import Foundation

struct RemapCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remap", abstract: "Bad-block remap volumes: a data device whose failing chunks move to a spare area.",
        subcommands: [Create.self, Add.self, Relocate.self, Remove.self])

    struct Create: AsyncParsableCommand, ForwardableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a remap volume over a data device, with a spare area (a new sparse file unless it exists).",
            discussion: "An existing spare area that holds a filesystem, a partition table or another known format (as libblkid finds), a disk image, another exception store, or (a regular file) any written data is refused unless --force. A write that fails with EIO moves its chunk to the spare area; a read that fails reports the error and the chunk moves on its next write.")
        @OptionGroup var options: PoolOptions
        @Argument(help: "The volume name.") var name: String
        @Option(help: "The data device or file.") var device: String
        @Option(help: "The spare area: a file (created if missing) or block device.") var spare: String
        @Option(help: "Size of a new spare file (default 1% of the device, at least 64 chunks).") var spareSize: String?
        @Option(help: "Chunk size: a power of two from 4K to 1G (default 4K).") var chunkSize: String?
        @Flag(help: "Format an existing spare area even if it holds data, a filesystem or another store.") var force = false

        func run() async throws {
            try await guarded {
                let chunk = try chunkBytes(chunkSize)
                let spareBytes = try bytes(spareSize)
                try await options.withController("snapvol remap create") {
                    try await $0.createRemap(name: name, devicePath: absolutePath(device), sparePath: absolutePath(spare),
                                             spareSize: spareBytes, chunkSize: chunk, force: force)
                }
                emit("created remap volume \(name)")
            }
        }
    }

    struct Add: AsyncParsableCommand, ForwardableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remap a chunk now, copying its readable data first.",
            discussion: "CHUNK_OR_OFFSET is a chunk index (a plain number) or a byte offset with a unit (4096B, 1M, 2048s).")
        @OptionGroup var options: PoolOptions
        @Argument(help: "The remap volume.", completion: VolumeCompletion.remaps) var name: String
        @Argument(help: "A chunk index, or a byte offset with a unit.") var chunkOrOffset: String

        func run() async throws {
            try await guarded {
                let remapped = try await options.withController("snapvol remap add") { controller -> (UInt64, Bool) in
                    let chunk: UInt64
                    if let index = UInt64(chunkOrOffset) {
                        chunk = index
                    } else {
                        let offset = try bytes(chunkOrOffset)
                        guard let size = controller.remapChunkSize(name) else { throw ControllerError.unknownVolume(name) }
                        chunk = offset / UInt64(size)
                    }
                    return (chunk, try await controller.addRemap(name: name, chunk: chunk))
                }
                emit(remapped.1 ? "remapped chunk \(remapped.0) of \(name)" : "chunk \(remapped.0) of \(name) was already remapped")
            }
        }
    }

    struct Relocate: AsyncParsableCommand, ForwardableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Point a remap volume that cannot be opened at its data device's or spare area's new path.",
            discussion: """
                After a restart gave a block device another name, or a file was moved. Each device must be the \
                one the volume was on (its identity, for a block device); the spare area must hold a spare area \
                of the volume's chunk size. Refused for a volume that is active.
                """)
        @OptionGroup var options: PoolOptions
        @Argument(help: "The remap volume.", completion: VolumeCompletion.remaps) var name: String
        @Option(help: "The data device's or file's new path.", completion: .file()) var device: String?
        @Option(help: "The spare area's new path.", completion: .file()) var spare: String?
        @Flag(help: AdoptDevice.help) var adoptDevice = false

        func run() async throws {
            try await guarded {
                let (device, spare) = (device.map(absolutePath), spare.map(absolutePath))
                let state = try await options.withController("snapvol remap relocate") {
                    try await $0.relocateRemap(name, devicePath: device, sparePath: spare, adoptingDevice: adoptDevice)
                }
                emit("relocated remap volume \(name): \(state)")
            }
        }
    }

    struct Remove: AsyncParsableCommand, ForwardableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a remap volume from the pool; its data device is left as it is.",
            discussion: """
                Its spare area is deleted if snapvol created it. Refused while chunks are remapped (their data lives \
                only in the spare area) or the spare area cannot be read, and while an NBD client of 'snapvol serve' \
                has it open, unless --force, which keeps the spare area and disconnects those clients.
                """)
        @OptionGroup var options: PoolOptions
        @Argument(help: "The remap volume.", completion: VolumeCompletion.remaps) var name: String
        @Flag(help: "Remove it even with chunks in its spare area (kept); disconnect its NBD clients.") var force = false

        func run() async throws {
            try await guarded {
                let removal = try await options.withController("snapvol remap remove") { try await $0.removeRemap(name: name, force: force) }
                var line = "removed remap volume \(name)"
                if let spare = removal.spareKept {
                    let chunks = removal.chunksInSpare.map { "\(Wording.counted($0, "remapped chunk")) left in it" } ?? "its content not known"
                    line += "; kept its spare area \(spare) (\(chunks))"
                }
                emit(line)
            }
        }
    }
}
