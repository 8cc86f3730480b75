import Foundation
import Testing
import TestSupport
@testable import Controller

/// `origin rename`: the origin answers to its new name in the registry (a new process sees it),
/// in the engine and over NBD; its path and snapshots stay; refusals change nothing.
@Suite(.mayBlock) struct OriginRenameTests {
    /// Origin `vm` (4 MiB of 0x33) with snapshot `before`.
    static func pool() throws -> TestPool {
        let pool = try TestPool.withOrigin("vm", size: "4M", pattern: "0x33")
        try pool.ok("snapshot", "create", "before", "--origin", "vm", "--cow", pool.file("before.cow"), "--cow-size", "4M")
        return pool
    }

    static func originNames(_ pool: TestPool) throws -> [String] {
        try (pool.status()["origins"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
    }

    @Test func theOriginAnswersToItsNewNameAndKeepsItsSnapshots() throws {
        let pool = try Self.pool()
        #expect(try pool.ok("origin", "rename", "vm", "web").text == "renamed origin vm to web\n")
        #expect(try Self.originNames(pool) == ["web"])
        let origin = try #require((pool.status()["origins"] as? [[String: Any]])?.first)
        #expect((origin["snapshots"] as? [[String: Any]])?.compactMap { $0["name"] as? String } == ["before"])
        #expect(origin["path"] as? String == pool.file("vm.img"), "the file stays where it is")

        try pool.ok("io", "write", "web", "0", "1M", "--pattern", "0x44")
        #expect(try pool.ok("io", "read", "web", "0", "1M").stdout.allSatisfy { $0 == 0x44 })
        #expect(try pool.ok("io", "read", "before", "0", "1M").stdout.allSatisfy { $0 == 0x33 }, "the snapshot still copies on write")
        let old = try pool.run("io", "read", "vm", "0", "4K")
        #expect(old.status == 1)
        #expect(old.stderr == "snapvol: error: no volume named 'vm' in this pool\n")
        // Back again: names are free once given up.
        try pool.ok("origin", "rename", "web", "vm")
        #expect(try pool.ok("io", "read", "vm", "0", "1M").stdout.allSatisfy { $0 == 0x44 })
    }

    @Test func refusalsChangeNothing() throws {
        let pool = try Self.pool()
        let registry = try Data(contentsOf: URL(fileURLWithPath: pool.file("pool/registry.json")))
        let cases: [([String], String)] = [
            (["nope", "x"], "no origin named 'nope' in this pool"),
            (["before", "x"], "'before' is a snapshot: use 'snapshot rename'"),
            (["vm", "before"], "a volume named 'before' already exists in this pool"),
            (["vm", "bad/name"], "invalid volume name 'bad/name': use 1-64 letters, digits, '.', '_' or '-', not starting with '-' or '.'"),
        ]
        for (arguments, message) in cases {
            let result = try pool.run(arguments: ["origin", "rename"] + arguments)
            #expect(result.status == 1, "\(arguments)")
            #expect(result.stderr == "snapvol: error: \(message)\n", "\(arguments): \(result.stderr)")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: pool.file("pool/registry.json"))) == registry)
    }

    /// Through a server: a client of the origin refuses the rename until `--force` disconnects
    /// it; a client of its snapshot stays; the export then answers to the new name only.
    @Test func aServedOriginIsRenamedForNewClients() throws {
        let pool = try Self.pool()
        let server = try ServeProcess(pool: pool)
        let (originClient, _) = try RawSocket.transmitting(server.socket, export: "vm")
        let (snapshotClient, _) = try RawSocket.transmitting(server.socket, export: "before")
        let refused = try pool.run("origin", "rename", "vm", "web")
        #expect(refused.status == 1)
        #expect(refused.stderr.hasPrefix("snapvol: error: volume 'vm' is in use by 1 NBD client"))
        #expect(try Self.originNames(pool) == ["vm"])
        #expect(try pool.ok("origin", "rename", "vm", "web", "--force").text == "renamed origin vm to web\n")
        #expect(originClient.closedByPeer())
        // The snapshot's client stays: its read is answered (NBD_CMD_READ, no error, the data).
        snapshotClient.send(NBDWire.request(type: 0, handle: 7, offset: 0, length: 4096))
        #expect(snapshotClient.receive(16) == NBDWire.simpleReply(error: 0, handle: 7), "the snapshot's client stays")
        #expect(snapshotClient.receive(4096).allSatisfy { $0 == 0x33 })
        let (_, answer) = try RawSocket.transmitting(server.socket, export: "web")
        #expect(answer.count == 86, "the export answers to its new name")
        let (_, unknown) = try RawSocket.transmitting(server.socket, export: "vm")
        #expect(unknown.count != 86, "the old name is no export")
        #expect(try pool.ok("events").text.contains("vm: renamed to web"))
        #expect(server.stop() == 0)
    }

    /// A renamed origin whose snapshot's COW is missing still gives that snapshot up before its
    /// first write: the guard finds the origin by its current name.
    @Test func aRenamedGuardedOriginStillGivesUpItsMissingSnapshot() async throws {
        let pool = try Self.pool()
        try FileManager.default.moveItem(atPath: pool.file("before.cow"), toPath: pool.file("before.away"))
        let controller = try await Controller.open(PoolLocation(directory: pool.file("pool")), purpose: "test")
        try await controller.renameOrigin("vm", to: "web")
        try await controller.volume(named: "web").writeBytes([UInt8](repeating: 0x55, count: 4096), at: 0)
        let record = try #require(controller.registry.snapshot(named: "before"))
        #expect(record.origin.name == "web")
        #expect(record.snapshot.staleReason?.hasPrefix("its origin was written while its COW could not be opened") == true)
        #expect(try controller.status().snapshot(named: "before")?.state == "invalid")
        await controller.close()
    }
}
