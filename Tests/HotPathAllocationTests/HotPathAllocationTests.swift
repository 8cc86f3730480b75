import BlockDevices
import ExceptionMachinery
import MallocInterposerSwift
import TestSupport
import VolumeTargets
import XCTest

/// The I/O an origin and its snapshots serve most (rewrites of chunks already copied, reads
/// of chunks in the COW and on the origin, I/O with no snapshot) makes no heap allocation: the
/// issue asks for none per I/O on hot paths. Counted with ordo-one's malloc interposer, which
/// this test target links, so it replaces `malloc` for the whole test process.
///
/// XCTest, not Swift Testing, on purpose: the interposer counts every thread, and `swift test`
/// runs the XCTest cases one at a time before any Swift Testing test starts, so nothing else
/// allocates while a case counts. The volumes are file-backed (the product's devices) and
/// write-back (as the controller opens every origin).
final class HotPathAllocationTests: XCTestCase {
    static let chunkBytes = 16384, blockBytes = 4096, operations = 2048
    static let originBytes = UInt64(operations * chunkBytes)

    /// A debug build runs unspecialized generic code, which allocates where the optimized one
    /// does not: these are the counts per operation it makes (measured on Swift 6.3.1). An
    /// optimized build allows none anywhere.
    static func allowed(_ path: String) -> Double {
        #if DEBUG
        return ["origin rewrite of copied chunks, 1 snapshot": 4][path] ?? 0
        #else
        return 0
        #endif
    }

    func testTheInterposerCountsThisProcess() {
        MallocInterposerSwift.initialize()
        MallocInterposerSwift.hook()
        let array = [Int](repeating: 7, count: 100)
        MallocInterposerSwift.unhook()
        XCTAssertEqual(array.count, 100)
        XCTAssertGreaterThan(MallocInterposerSwift.getStatistics().mallocCount, 0, "malloc is not interposed: the allocation counts below would all read 0")
    }

    func testHotPathsAllocateNothing() async throws {
        let dir = try TemporaryDirectory()
        let origin = Origin(name: "origin", device: try FileBlockDevice.create(path: dir.file("origin.img"), size: Self.originBytes),
                            writeBack: true)
        let buffer = AlignedBuffer(count: Self.blockBytes)
        buffer.fill(0x5A)
        // Blocks spread over every chunk, in an order that is not sequential.
        let blocks = (0..<Self.operations).map { UInt64(($0 &* 769) % Self.operations) * UInt64(Self.chunkBytes) }
        try await expectNoAllocations("origin write, no snapshot") { try await origin.write(buffer.bytes, at: blocks[$0]) }
        try await expectNoAllocations("origin read, no snapshot") { try await origin.read(into: buffer.mutableBytes, at: blocks[$0]) }

        let snapshot = try await attachSnapshot(to: origin, cowPath: dir.file("snapshot.cow"))
        let firstHalf = Self.operations / 2
        for index in 0..<firstHalf { try await origin.write(buffer.bytes, at: blocks[index]) }   // copies chunks
        try await origin.flush()
        let copied = { (index: Int) in blocks[index % firstHalf] }
        let onOrigin = { (index: Int) in blocks[firstHalf + index % firstHalf] + UInt64(Self.blockBytes) }
        try await expectNoAllocations("origin rewrite of copied chunks, 1 snapshot") { try await origin.write(buffer.bytes, at: copied($0)) }
        try await expectNoAllocations("snapshot read, chunk in COW") { try await snapshot.read(into: buffer.mutableBytes, at: copied($0)) }
        try await expectNoAllocations("snapshot read, chunk on origin") { try await snapshot.read(into: buffer.mutableBytes, at: onOrigin($0)) }
        try await expectNoAllocations("origin read, 1 snapshot") { try await origin.read(into: buffer.mutableBytes, at: onOrigin($0)) }
        try await expectNoAllocations("snapshot rewrite of chunks in COW") { try await snapshot.write(buffer.bytes, at: copied($0)) }
        await origin.detach(snapshot)
    }

    private func attachSnapshot(to origin: Origin, cowPath: String) async throws -> Snapshot {
        let geometry = try ChunkGeometry(chunkBytes: Self.chunkBytes)
        let cow = try FileBlockDevice.create(path: cowPath, size: Self.originBytes * 2)
        let store = try await PersistentExceptionStore.format(cow, geometry: geometry,
                                                              originChunks: geometry.chunksCovering(Self.originBytes))
        return try await origin.attach(name: "snapshot", store: store)
    }

    /// Runs `operation` for every index once to warm up (buffers, tables, thread-locals), then
    /// again counting, and fails if it allocated per operation (more than `allowed(path)`).
    private func expectNoAllocations(_ path: String, _ operation: (Int) async throws -> Void) async throws {
        for index in 0..<Self.operations { try await operation(index) }
        MallocInterposerSwift.initialize()
        MallocInterposerSwift.hook()
        for index in 0..<Self.operations { try await operation(index) }
        MallocInterposerSwift.unhook()
        let statistics = MallocInterposerSwift.getStatistics()
        let perOperation = Double(statistics.mallocCount) / Double(Self.operations)
        print("\(path): \(perOperation) allocations, \(Double(statistics.mallocBytesCount) / Double(Self.operations)) bytes per operation")
        // Fewer than one per hundred operations: any allocation made per operation counts
        // 2048, while the process's own stray work (a thread pool waking, an earlier flush's
        // tail) made up to 11 in a full `swift test` run.
        XCTAssertLessThan(perOperation, Self.allowed(path) + 0.01,
                          "\(path): \(statistics.mallocCount) allocations in \(Self.operations) operations")
    }
}
