import Foundation
import Testing
import TestSupport

/// One origin, the stream of writes its client sends, and that client.
struct LiveVolume {
    let origin: String
    let stream: WriteStream
    let writer: QemuIOStream
}

/// The snapshots of one test: created in order, some read while the clients write, some
/// deleted; what each must hold is bounded by its origin's writes around its creation.
struct LiveSnapshots {
    /// A snapshot's origin, and the prefixes of its origin's stream it may hold.
    struct Taken {
        let volume: LiveVolume
        let shortest: Int, longest: Int
    }

    let pool: TestPool
    let volumes: [LiveVolume]
    private(set) var names: [String] = []
    private(set) var created = 0
    private var taken: [String: Taken] = [:]
    /// What a snapshot read as while the clients wrote, by name.
    private var earlierReads: [String: [UInt8]] = [:]
    /// Snapshots whose prefix was neither empty nor the whole stream, at the last check.
    private(set) var takenMidStream = 0

    init(pool: TestPool, volumes: [LiveVolume]) {
        self.pool = pool
        self.volumes = volumes
    }

    /// One `snapshot create` of a snapshot of each of `members` (a consistent group when more
    /// than one).
    mutating func create(of members: [LiveVolume], chunkSize: String) throws {
        let before = members.map(\.writer.acknowledged)
        let group = members.map { (volume: $0, name: "s\(created)-\($0.origin)") }
        try pool.ok(arguments: ["snapshot", "create"] + group.map(\.name) + group.flatMap { ["--origin", $0.volume.origin] }
                    + group.flatMap { ["--cow", pool.file("\($0.name).cow")] } + ["--cow-size", "12M", "--chunk-size", chunkSize])
        for (index, member) in group.enumerated() {
            // The client issues its next write only after printing the last one's line.
            taken[member.name] = Taken(volume: member.volume, shortest: before[index], longest: member.volume.writer.acknowledged + 1)
            names.append(member.name)
        }
        created += 1
    }

    mutating func read(_ name: String, server: ServeProcess) throws {
        earlierReads[name] = try NBDClientTests.copy(server.uri(name), to: pool.file("\(name).early"))
    }

    /// Forgets snapshot `name`, consumed by a merge.
    mutating func forget(_ name: String) {
        names.removeAll { $0 == name }
        earlierReads[name] = nil
    }

    mutating func delete(_ name: String) throws {
        try pool.ok("snapshot", "delete", name)
        names.removeAll { $0 == name }
        earlierReads[name] = nil
    }

    /// Reads every snapshot and expects each to be a prefix of its origin's stream within its
    /// bounds, no shorter than the one of the same origin created before it, and equal to what
    /// it read as earlier.
    mutating func expectPrefixes(server: ServeProcess, seed: UInt64, when: String) throws {
        var shortest: [String: Int] = [:]
        takenMidStream = 0
        for name in names {
            let taken = taken[name]!, stream = taken.volume.stream, origin = taken.volume.origin
            let image = try NBDClientTests.copy(server.uri(name), to: pool.file("\(name).read"))
            if let earlier = earlierReads[name] {
                let same = sameBytes(earlier, image)
                #expect(same, "\(name) read differently \(when) than while the client wrote; seed \(seed)")
            }
            let lowest = max(shortest[origin] ?? 0, taken.shortest)
            let prefixes = stream.prefixes(of: image, upTo: taken.longest)
            guard let prefix = prefixes.first(where: { $0 >= lowest }) else {
                Issue.record("\(name) \(when) is no prefix of \(origin)'s writes from \(lowest) to \(taken.longest) (matches: \(prefixes.prefix(5))); seed \(seed)")
                continue
            }
            if prefix > 0 && prefix < stream.writes.count { takenMidStream += 1 }
            shortest[origin] = prefix
        }
    }
}
