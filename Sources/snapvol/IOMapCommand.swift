import ArgumentParser
import Controller
import VolumeTargets

extension IOCommand {
    /// `io map`: where a volume holds data, or which chunks a snapshot holds itself, as the NBD
    /// export's block status tells (`base:allocation`, `snapvol:exceptions`).
    struct Map: AsyncParsableCommand, ForwardableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List a volume's extents: data and holes, or (--exceptions) the chunks a snapshot holds.",
            discussion: """
                Each line is OFFSET LENGTH TYPE. Without --exceptions TYPE is `data` or `hole` (reads as zeros); \
                a volume that cannot tell shows data. With --exceptions, on a snapshot, TYPE is `held` (the \
                snapshot holds the chunk: it changed on the origin since the snapshot was taken, or was written \
                to the snapshot) or `shared` (unchanged): the ranges an incremental backup copies.
                """)
        @OptionGroup var options: PoolOptions
        @Argument(help: "Origin or snapshot name.", completion: VolumeCompletion.volumes) var volume: String
        @Flag(help: "The chunks the snapshot holds instead of data and holes.") var exceptions = false
        @Flag(help: "Print the extents as JSON.") var json = false
        @Option(help: ArgumentHelp("With --exceptions: split the snapshot into this many equal parts and say what share of each it holds.",
                                   valueName: "parts"))
        var cells: Int?

        struct Extent: Encodable, Equatable {
            let offset: UInt64
            let length: UInt64
            let type: String
        }

        func run() async throws {
            try await guarded {
                try await options.withController("snapvol io map") { controller in
                    let target = try controller.volume(named: volume)
                    let snapshot = target as? Snapshot
                    if exceptions && snapshot == nil { throw ControllerError.refused("'\(volume)' is not a snapshot: --exceptions lists a snapshot's chunks") }
                    if let cells { return try Self.printParts(cells, of: snapshot, exceptions: exceptions, json: json) }
                    let extents = try await Self.extents(of: target, exceptionsOf: exceptions ? snapshot : nil)
                    if json { return try printJSON(extents) }
                    for extent in extents { emit("\(extent.offset) \(extent.length) \(extent.type)") }
                }
            }
        }

        /// The whole volume's extents, asking again where a map covers only a prefix, with
        /// neighbours of one type joined.
        static func extents(of volume: any Volume, exceptionsOf snapshot: Snapshot?) async throws -> [Extent] {
            let (marked, unmarked) = snapshot == nil ? ("data", "hole") : ("held", "shared")
            var extents: [Extent] = []
            var offset: UInt64 = 0
            while offset < volume.size {
                let map = if let snapshot {
                    try await snapshot.exceptionMap(offset: offset, length: volume.size - offset)
                } else {
                    try await volume.dataMap(offset: offset, length: volume.size - offset)
                }
                for extent in map.extents {
                    let type = extent.marked ? marked : unmarked
                    if let last = extents.last, last.type == type {
                        extents[extents.count - 1] = Extent(offset: last.offset, length: last.length + extent.length, type: type)
                    } else {
                        extents.append(Extent(offset: offset, length: extent.length, type: type))
                    }
                    offset += extent.length
                }
            }
            return extents
        }

        /// One share of the volume: its bytes and the fraction of its chunks the snapshot holds.
        struct Part: Codable, Equatable {
            let offset: UInt64
            let length: UInt64
            let held: Double
        }

        /// `--cells`: the TUI's chunk map, `parts` lines `OFFSET LENGTH HELD` (HELD from 0 to 1).
        static func printParts(_ parts: Int, of snapshot: Snapshot?, exceptions: Bool, json: Bool) throws {
            guard exceptions, let snapshot else { throw ControllerError.refused("--cells needs --exceptions (a snapshot's chunks)") }
            guard (1...4096).contains(parts) else { throw ControllerError.refused("invalid --cells \(parts): from 1 to 4096") }
            // As the extents are refused: an invalid snapshot holds nothing to show.
            if case .invalid(let reason) = snapshot.status.condition { throw VolumeError.invalid(volume: snapshot.name, reason: reason) }
            let result = snapshot.origin.chunkMap(of: snapshot, cells: parts).map { part in
                Part(offset: part.range.lowerBound, length: part.range.upperBound - part.range.lowerBound,
                     held: (part.held * 10_000).rounded() / 10_000)
            }
            if json { return try printJSON(result) }
            for part in result { emit("\(part.offset) \(part.length) \(part.held)") }
        }
    }
}
