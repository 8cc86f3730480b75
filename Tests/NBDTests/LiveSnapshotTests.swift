import Foundation
import Testing
import TestSupport

/// Snapshots created, read and deleted through `snapvol serve` while real clients (qemu-io, one
/// per origin) write two origins, one request at a time; some snapshots are consistent groups of
/// both. A snapshot is a point in its origin's stream: it must hold exactly the origin's image
/// after some prefix of the client's writes (never half a write), no shorter than the writes
/// acknowledged before its creation began and no longer than those issued by its end, a
/// snapshot created later a prefix at least as long, and it must read the same every time:
/// while the clients write, after they stop, after `serve` restarts from disk, and after
/// `serve` is killed mid-stream.
@Suite(.mayBlock, .serialized, .enabled(if: Environment.canRun(commands: ["nbdcopy", "qemu-io", "stdbuf"])))
struct LiveSnapshotTests {
    static let size = 8 << 20
    static let origins = ["a", "b"]

    @Test(arguments: [false, true])
    func everySnapshotIsAPrefixOfItsOriginsWrites(killingTheServer: Bool) throws {
        var generator = SeededGenerator.fromEnvironment()
        let seed = generator.seed
        let count = Int(Environment.value("SNAPVOL_LIVE_WRITES") ?? "") ?? 2000
        let pool = try TestPool()
        try pool.ok("pool", "init")
        for origin in Self.origins {
            try pool.ok("origin", "add", origin, "--path", pool.file("\(origin).img"), "--size", "8M")
        }
        var server = try ServeProcess(pool: pool)
        var live = try LiveSnapshots(pool: pool, volumes: Self.origins.map { origin in
            let stream = WriteStream(count: count, size: Self.size, using: &generator)
            return try LiveVolume(origin: origin, stream: stream, writer: QemuIOStream(stream, uri: server.uri(origin), log: pool.file("\(origin).log")))
        })

        var chunkSizes = ["4K", "16K", "64K"].shuffled(using: &generator)
        while live.volumes.allSatisfy(\.writer.isRunning) && live.created < 12 {
            let chunk = chunkSizes.removeFirst()
            chunkSizes.append(chunk)
            try live.create(of: Bool.random(using: &generator) ? live.volumes : [live.volumes.randomElement(using: &generator)!], chunkSize: chunk)
            if Bool.random(using: &generator), let name = live.names.randomElement(using: &generator) {
                try live.read(name, server: server)
            }
            if live.names.count > 6, let oldest = live.names.first { try live.delete(oldest) }
            try pool.ok("status", "--json")
            if killingTheServer && live.created == 4 {
                server.signal(SIGKILL)
                server.waitForExit()
                break
            }
        }
        for volume in live.volumes {
            let status = volume.writer.waitForExit()
            if !killingTheServer { #expect(status == 0, "qemu-io on \(volume.origin): \(volume.writer.output)") }
        }

        if !killingTheServer {
            for volume in live.volumes {
                let image = try NBDClientTests.copy(server.uri(volume.origin), to: pool.file("\(volume.origin).read"))
                #expect(volume.stream.prefixes(of: image).last == count, "\(volume.origin) lacks writes; seed \(seed)")
            }
            try live.expectPrefixes(server: server, seed: seed, when: "after the writes")
        }
        server.stop()
        server = try ServeProcess(pool: pool)
        try live.expectPrefixes(server: server, seed: seed, when: killingTheServer ? "after serve was killed" : "after serve restarted")
        #expect(live.takenMidStream >= 3,
                "only \(live.takenMidStream) snapshots fell inside their streams: the writers were too quick to judge; seed \(seed)")
        server.stop()
        for name in live.names {
            let check = try SnapvolBinary.run(["check", pool.file("\(name).cow")])
            #expect(check.status == 0, "check \(name): \(check.text)\(check.stderr); seed \(seed)")
        }
    }

    /// A snapshot merged while the client writes its origin: the origin ends as the snapshot
    /// with the writes from the merge's start on (one instant, between the writes acknowledged
    /// before the command and those issued after it returned), and a later snapshot of the
    /// same origin, which the merge's writes must preserve, still holds its prefix.
    @Test func aMergeUnderWritesRollsBackAndKeepsLaterWritesAndSnapshots() throws {
        var generator = SeededGenerator.fromEnvironment()
        let seed = generator.seed
        let pool = try TestPool()
        try pool.ok("pool", "init")
        try pool.ok("origin", "add", "a", "--path", pool.file("a.img"), "--size", "8M")
        let server = try ServeProcess(pool: pool)
        let stream = WriteStream(count: Int(Environment.value("SNAPVOL_LIVE_WRITES") ?? "") ?? 2000 * 4, size: Self.size, using: &generator)
        let volume = try LiveVolume(origin: "a", stream: stream, writer: QemuIOStream(stream, uri: server.uri("a"), log: pool.file("a.log")))
        var live = LiveSnapshots(pool: pool, volumes: [volume])

        // 4K chunks and 1,500 writes before the merge: enough exceptions that the merge runs
        // while the client writes on.
        try volume.writer.wait(forAcknowledged: 300)
        try live.create(of: [volume], chunkSize: "4K")
        let merged = live.names[0]
        let base = try NBDClientTests.copy(server.uri(merged), to: pool.file("merged.read"))
        try volume.writer.wait(forAcknowledged: volume.writer.acknowledged + 1000)
        try live.create(of: [volume], chunkSize: "64K")
        try volume.writer.wait(forAcknowledged: volume.writer.acknowledged + 500)
        let before = volume.writer.acknowledged
        try pool.ok("snapshot", "merge", merged, "--no-progress")
        let after = volume.writer.acknowledged + 1
        live.forget(merged)
        #expect(volume.writer.waitForExit() == 0, "qemu-io: \(volume.writer.output)")
        #expect(after < stream.writes.count, "the writer ended before the merge did: nothing judged; seed \(seed)")

        #expect(!stream.prefixes(of: base, upTo: before).isEmpty, "\(merged) is no prefix of the writes; seed \(seed)")
        let origin = try NBDClientTests.copy(server.uri("a"), to: pool.file("a.read"))
        if let problem = stream.mismatch(of: origin, mergedOnto: base, startingWithin: before..<after) {
            Issue.record("the origin after the merge: \(problem); seed \(seed)")
        }
        try live.expectPrefixes(server: server, seed: seed, when: "after a merge of another snapshot")
        #expect(server.stop() == 0)
    }
}

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

/// A client's stream of writes to one volume, issued one at a time, and the images its prefixes
/// leave.
struct WriteStream {
    /// `byte` 0 is a WRITE_ZEROES request.
    struct Write {
        let offset: Int, length: Int, byte: UInt8
    }

    let writes: [Write]

    /// `count` writes of 512 bytes to 32 KiB at sector offsets in a volume of `size` bytes, half
    /// of them in its first 256 KiB, so that writes queued for their copies overlap; one in ten
    /// writes zeroes.
    init(count: Int, size: Int, using generator: inout SeededGenerator) {
        writes = (0..<count).map { _ in
            let length = Int.random(in: 1...64, using: &generator) * 512
            let span = Bool.random(using: &generator) ? 256 << 10 : size
            let offset = Int.random(in: 0...(span - length) / 512, using: &generator) * 512
            let byte: UInt8 = Int.random(in: 0..<10, using: &generator) == 0 ? 0 : UInt8.random(in: 1...255, using: &generator)
            return Write(offset: offset, length: length, byte: byte)
        }
    }

    /// The stream as qemu-io commands, ending with a flush.
    var commands: [String] {
        writes.map { $0.byte == 0 ? "write -z \($0.offset) \($0.length)" : "write -P \($0.byte) \($0.offset) \($0.length)" } + ["flush"]
    }

    /// Every k up to `longest` for which the volume (zeroes at first), after the stream's first
    /// k writes, equals `image`, ascending. Keeps a count of the bytes that differ, updated over
    /// each write's range only.
    func prefixes(of image: [UInt8], upTo longest: Int = .max) -> [Int] {
        var model = [UInt8](repeating: 0, count: image.count)
        return model.withUnsafeMutableBufferPointer { model in
            image.withUnsafeBufferPointer { image in
                var differing = 0
                for index in 0..<model.count where model[index] != image[index] { differing += 1 }
                var matches = differing == 0 ? [0] : []
                for (index, write) in writes.prefix(longest).enumerated() {
                    for byteIndex in write.offset..<write.offset + write.length {
                        let wanted = image[byteIndex]
                        if model[byteIndex] != wanted { differing -= 1 }
                        model[byteIndex] = write.byte
                        if write.byte != wanted { differing += 1 }
                    }
                    if differing == 0 { matches.append(index + 1) }
                }
                return matches
            }
        }
    }
}

extension WriteStream {
    /// Why `image` is not `base` with the stream's writes from one index m in `began` on
    /// applied (nil if it is): a byte last written before `began` holds `base`'s byte, one last
    /// written at or after its end that write's byte, and each byte last written within it
    /// one of the two, all agreeing on m.
    func mismatch(of image: [UInt8], mergedOnto base: [UInt8], startingWithin began: Range<Int>) -> String? {
        var last = [Int32](repeating: -1, count: image.count)
        for (index, write) in writes.enumerated() {
            for byteIndex in write.offset..<write.offset + write.length { last[byteIndex] = Int32(index) }
        }
        var lowest = began.lowerBound, highest = began.upperBound   // m lies in lowest...highest
        for byteIndex in 0..<image.count {
            let writer = Int(last[byteIndex])
            let written = writer >= 0 ? writes[writer].byte : nil
            if writer < began.lowerBound || writer >= began.upperBound {
                let wanted = writer >= began.upperBound ? written! : base[byteIndex]
                if image[byteIndex] != wanted { return "byte \(byteIndex) is \(image[byteIndex]), not \(wanted) (last written by write \(writer))" }
                continue
            }
            let isWritten = image[byteIndex] == written, isBase = image[byteIndex] == base[byteIndex]
            if !isWritten && !isBase { return "byte \(byteIndex) is \(image[byteIndex]): neither the snapshot's nor write \(writer)'s" }
            if isWritten && !isBase { highest = min(highest, writer) }   // the write came after the start
            if isBase && !isWritten { lowest = max(lowest, writer + 1) }  // it came before
        }
        return lowest <= highest ? nil : "no single instant: writes up to \(lowest - 1) came before the merge's start, write \(highest) after"
    }
}

/// qemu-io writing a `WriteStream` to an NBD URI in the background, its output in a file, line
/// by line (`stdbuf`): each "wrote" line is printed once that write is acknowledged.
final class QemuIOStream {
    private let process = Process()
    private let log: String

    init(_ stream: WriteStream, uri: String, log: String) throws {
        self.log = log
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.executableURL = URL(fileURLWithPath: "/usr/bin/stdbuf")
        process.arguments = ["-oL", "qemu-io", "-f", "raw"] + stream.commands.flatMap { ["-c", $0] } + [uri]
        process.standardOutput = output
        process.standardError = output
        try process.run()
    }

    var isRunning: Bool { process.isRunning }

    var output: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    /// The writes acknowledged so far, at least.
    var acknowledged: Int { output.split(separator: "\n").count { $0.hasPrefix("wrote ") } }

    /// Waits until `count` writes are acknowledged; throws if the client ends first or after
    /// 60 s.
    func wait(forAcknowledged count: Int) throws {
        let deadline = Date().addingTimeInterval(60)
        while acknowledged < count {
            guard isRunning, Date() < deadline else { throw StreamStalled(count: count, output: output) }
            Thread.sleep(forTimeInterval: 0.005)
        }
    }

    struct StreamStalled: Error, CustomStringConvertible {
        let count: Int, output: String
        var description: String { "qemu-io ended or stalled before \(count) writes were acknowledged: \(output.suffix(500))" }
    }

    @discardableResult
    func waitForExit() -> Int32 {
        process.waitUntilExit()
        return process.terminationStatus
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
}
