import Foundation
import Testing
import TestSupport

/// Structured replies and the `base:allocation` context: real clients skip the holes of a
/// sparse volume, and the bytes on the wire are checked by hand. Always in CI.
@Suite(.mayBlock, .serialized, .enabled(if: Environment.canRun(commands: ["nbdcopy", "nbdinfo", "qemu-img"])))
struct NBDBlockStatusTests {
    /// A sparse 32 MiB origin `data` with data at 0 (1 MiB of 0x41) and 16 MiB (64 KiB of 0x42),
    /// a snapshot `snap` at 64 KiB chunks, then 64 KiB of 0x43 written to the origin at 24 MiB
    /// (a hole there: the snapshot's copy of it is zeros).
    static func pool() throws -> TestPool {
        try TestPool.sparseOriginWithSnapshot(origin: "data", snapshot: "snap", size: 32 << 20, second: 16 << 20,
                                              changed: (24 << 20, 65536))
    }

    /// (offset, length, flags) for each line of `nbdinfo --map`, of `base:allocation` unless
    /// another context is named.
    static func map(_ uri: String, context: String? = nil) throws -> [[UInt64]] {
        try Shell.check(["nbdinfo", context.map { "--map=\($0)" } ?? "--map", uri]).text.split(separator: "\n").map { line in
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            return [UInt64(fields[0])!, UInt64(fields[1])!, UInt64(fields[2])!]
        }
    }

    static let mib: UInt64 = 1 << 20
    /// Both volumes' extents: data, hole, data, hole, data (the snapshot's copy at 24 MiB is
    /// data to it, though zeros: a chunk held in the COW is reported as data), hole.
    static let extents: [[UInt64]] = [[0, mib, 0], [mib, 15 * mib, 3], [16 * mib, 65536, 0], [16 * mib + 65536, 8 * mib - 65536, 3],
                                      [24 * mib, 65536, 0], [24 * mib + 65536, 8 * mib - 65536, 3]]

    @Test func clientsSeeTheHolesOfOriginAndSnapshot() throws {
        let pool = try Self.pool()
        let server = try ServeProcess(pool: pool)
        #expect(try Self.map(server.uri("data")) == Self.extents)
        #expect(try Self.map(server.uri("snap")) == Self.extents)
        let qemuMap = try Shell.check(["qemu-img", "map", "--output=json", "-f", "raw", server.uri("snap")]).text
        #expect(qemuMap.components(separatedBy: "\"data\": true").count - 1 == 3)
        // nbdcopy reads through structured replies and skips the holes; the image is exact.
        try Shell.check(["nbdcopy", server.uri("snap"), pool.file("snap.img")])
        var expected = [UInt8](repeating: 0, count: 32 << 20)
        expected.replaceSubrange(0..<(1 << 20), with: repeatElement(0x41, count: 1 << 20))
        expected.replaceSubrange((16 << 20)..<(16 << 20) + 65536, with: repeatElement(0x42, count: 65536))
        #expect(sameBytes([UInt8](FileManager.default.contents(atPath: pool.file("snap.img"))!), expected))
        #expect(server.stop() == 0)
    }

    /// An incremental backup: a full copy of snapshot `snap`, then writes to the origin, then a
    /// second snapshot; the chunks `snapvol:exceptions` names on `snap`, read from the second
    /// snapshot, turn the first copy into the second. The origin has no such context.
    @Test func exceptionsContextDrivesAnIncrementalBackup() throws {
        var generator = SeededGenerator.fromEnvironment()
        let pool = try Self.pool()
        let server = try ServeProcess(pool: pool)
        try Shell.check(["nbdcopy", server.uri("snap"), pool.file("backup.img")])
        var backup = [UInt8](FileManager.default.contents(atPath: pool.file("backup.img"))!)
        var commands: [String] = []
        for _ in 0..<12 {
            let length = Int.random(in: 1...64, using: &generator) * 4096
            let offset = Int.random(in: 0...((32 << 20) - length) / 4096, using: &generator) * 4096
            commands.append("write -P \(Int.random(in: 1...255, using: &generator)) \(offset) \(length)")
        }
        try Shell.check(["qemu-io", "-f", "raw"] + commands.flatMap { ["-c", $0] } + ["-c", "flush", server.uri("data")])
        try pool.ok("snapshot", "create", "next", "--origin", "data", "--cow", pool.file("next.cow"), "--chunk-size", "64K")

        let changed = try Self.map(server.uri("snap"), context: "snapvol:exceptions").filter { $0[2] == 1 }
        #expect(!changed.isEmpty)
        for extent in changed {
            let read = try pool.ok("io", "read", "next", "\(extent[0])", "\(extent[1])").stdout
            backup.replaceSubrange(Int(extent[0])..<Int(extent[0] + extent[1]), with: read)
        }
        try Shell.check(["nbdcopy", server.uri("next"), pool.file("next.img")])
        #expect(sameBytes(backup, [UInt8](FileManager.default.contents(atPath: pool.file("next.img"))!)), "seed \(generator.seed)")
        #expect(try Shell.run(["nbdinfo", "--map=snapvol:exceptions", server.uri("data")]).status != 0)
        #expect(server.stop() == 0)
    }

    @Test func structuredRepliesOnTheWire() throws {
        let pool = try Self.pool()
        let server = try ServeProcess(pool: pool)
        let client = try RawSocket(path: server.socket)
        #expect(client.receive(18).count == 18)
        client.send(bigEndian(UInt32(3)))
        client.send(NBDWire.option(8, []))
        #expect(client.receive(20) == NBDWire.optionReply(8, type: 1, length: 0))
        let context = Array("base:allocation".utf8)
        client.send(NBDWire.option(10, lengthPrefixed("data") + bigEndian(UInt32(1)) + bigEndian(UInt32(context.count)) + context))
        #expect(client.receive(20 + 4 + context.count) == NBDWire.optionReply(10, type: 4, length: 4 + context.count) + bigEndian(UInt32(1)) + context)
        #expect(client.receive(20) == NBDWire.optionReply(10, type: 1, length: 0))
        client.send(NBDWire.go("data"))
        #expect(client.receive(86).count == 86)

        // BLOCK_STATUS: one chunk, done, context 1, the six extents.
        client.send(NBDWire.request(type: 7, handle: 11, offset: 0, length: 32 << 20))
        #expect(client.receive(20) == chunkHeader(type: 5, handle: 11, length: 4 + 8 * Self.extents.count))
        #expect(client.receive(4 + 8 * Self.extents.count)
                == bigEndian(UInt32(1)) + Self.extents.flatMap { bigEndian(UInt32($0[1])) + bigEndian(UInt32($0[2])) })
        // READ: the data as one OFFSET_DATA chunk.
        client.send(NBDWire.request(type: 0, handle: 12, offset: 16 << 20, length: 4096))
        #expect(client.receive(20) == chunkHeader(type: 1, handle: 12, length: 8 + 4096))
        #expect(client.receive(8 + 4096) == bigEndian(UInt64(16 << 20)) + [UInt8](repeating: 0x42, count: 4096))
        // A read of no bytes: a NONE chunk (a data chunk carries at least one byte).
        client.send(NBDWire.request(type: 0, handle: 16, offset: 0, length: 0))
        #expect(client.receive(20) == chunkHeader(type: 0, handle: 16, length: 0))
        // A read past the end: a structured error (EINVAL, no message), never a simple reply.
        client.send(NBDWire.request(type: 0, handle: 13, offset: 32 << 20, length: 4096))
        #expect(client.receive(26) == chunkHeader(type: 0x8001, handle: 13, length: 6) + bigEndian(UInt32(22)) + bigEndian(UInt16(0)))

        // Without the context selected, BLOCK_STATUS is refused (EINVAL) and the session goes on.
        let (plain, replies) = try RawSocket.transmitting(server.socket, export: "data")
        #expect(replies.count == 86)
        plain.send(NBDWire.request(type: 7, handle: 14, offset: 0, length: 4096))
        #expect(plain.receive(16) == NBDWire.simpleReply(error: 22, handle: 14))
        plain.send(NBDWire.request(type: 0, handle: 15, offset: 0, length: 512))
        #expect(plain.receive(16 + 512) == NBDWire.simpleReply(error: 0, handle: 15)
                + [UInt8](repeating: 0x41, count: 512))
        #expect(server.stop() == 0)
    }

    private func chunkHeader(type: UInt16, handle: UInt64, length: Int) -> [UInt8] {
        bigEndian(UInt32(0x668E_33EF)) + bigEndian(UInt16(1)) + bigEndian(type) + bigEndian(handle) + bigEndian(UInt32(length))
    }
}
