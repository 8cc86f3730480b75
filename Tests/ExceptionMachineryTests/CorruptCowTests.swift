import BlockDevices
import ExceptionMachinery
import Testing
import TestSupport

/// Bad COW devices are refused with a typed error naming the fault, and nothing is written.
@Suite struct CorruptCowTests {
    static let chunk = 4096

    /// A valid store with `records` committed, as raw bytes.
    static func store(records: Int = 3, size: Int = 1 << 20) async throws -> [UInt8] {
        let device = MemoryBlockDevice(name: "cow", size: size)
        let store = try await PersistentExceptionStore.format(device, geometry: try ChunkGeometry(chunkBytes: chunk))
        for i in 0..<records { try await store.commitException(old: UInt64(i), new: try store.prepareException()) }
        return device.contents
    }

    /// Scans `bytes` and returns the error, checking that the device was not modified.
    static func refusal(_ bytes: [UInt8], requiredChunkBytes: Int? = nil, originChunks: UInt64? = nil) async -> CowFormatError? {
        let device = FaultInjectingDevice(wrapping: MemoryBlockDevice(name: "cow", contents: bytes))
        var caught: CowFormatError?
        do {
            let store = try await PersistentExceptionStore.open(device, requiredChunkBytes: requiredChunkBytes, originChunks: originChunks)
            _ = try await store.readMetadata { _, _ in }
        } catch let error as CowFormatError {
            caught = error
        } catch {
            Issue.record("unexpected error \(error)")
        }
        #expect(device.counters.writes == 0)
        #expect((device.base as! MemoryBlockDevice).contents == bytes)
        return caught
    }

    static func put(_ value: UInt64, in bytes: inout [UInt8], area: Int = 0, slot: Int, field: Int) {
        LittleEndian.put(value, into: &bytes, at: (1 + area * 257) * chunk + slot * 16 + field * 8)
    }

    @Test func corruptMagic() async throws {
        var bytes = try await Self.store()
        bytes[0] = 0x99
        #expect(await Self.refusal(bytes) == .badMagic(device: "cow", found: 0x7041_6e99))
    }

    @Test func versionTwo() async throws {
        var bytes = try await Self.store()
        LittleEndian.put(UInt32(2), into: &bytes, at: 8)
        #expect(await Self.refusal(bytes) == .unsupportedVersion(device: "cow", version: 2))
    }

    @Test func chunkSizeNotAPowerOfTwo() async throws {
        var bytes = try await Self.store()
        LittleEndian.put(UInt32(24), into: &bytes, at: 12)
        #expect(await Self.refusal(bytes) == .badChunkSize(device: "cow", sectors: 24))
    }

    @Test func chunkSizeMismatch() async throws {
        let bytes = try await Self.store()
        #expect(await Self.refusal(bytes, requiredChunkBytes: 16384) == .chunkSizeMismatch(device: "cow", onDisk: 4096, requested: 16384))
    }

    @Test func smallerThanThreeChunks() async throws {
        let bytes = Array(try await Self.store().prefix(2 * Self.chunk))
        #expect(await Self.refusal(bytes) == .tooSmall(device: "cow", bytes: 8192, chunkBytes: 4096))
    }

    @Test func truncatedAfterAFullArea() async throws {
        let full = try await Self.store(records: 256, size: 2 << 20)
        let bytes = Array(full.prefix(258 * Self.chunk))
        #expect(await Self.refusal(bytes) == .truncated(device: "cow", area: 1, chunk: 258))
    }

    @Test func recordPastTheEnd() async throws {
        var bytes = try await Self.store()
        Self.put(5000, in: &bytes, slot: 1, field: 1)
        #expect(await Self.refusal(bytes) == .recordPastEnd(device: "cow", area: 0, slot: 1, new: 5000, deviceChunks: 256))
    }

    @Test func recordPointingAtMetadata() async throws {
        var bytes = try await Self.store()
        Self.put(1, in: &bytes, slot: 2, field: 1)
        #expect(await Self.refusal(bytes) == .recordAtMetadata(device: "cow", area: 0, slot: 2, new: 1))
    }

    @Test func recordBeyondTheOrigin() async throws {
        var bytes = try await Self.store()
        Self.put(99, in: &bytes, slot: 0, field: 0)
        #expect(await Self.refusal(bytes, originChunks: 50) == .recordBeyondOrigin(device: "cow", area: 0, slot: 0, old: 99, originChunks: 50))
    }

    @Test func duplicateOriginChunk() async throws {
        var bytes = try await Self.store()
        Self.put(0, in: &bytes, slot: 2, field: 0)
        #expect(await Self.refusal(bytes) == .duplicateOrigin(device: "cow", area: 0, slot: 2, old: 0))
    }

    @Test func duplicateStoreChunk() async throws {
        var bytes = try await Self.store()
        Self.put(2, in: &bytes, slot: 1, field: 1)
        #expect(await Self.refusal(bytes) == .duplicateStore(device: "cow", area: 0, slot: 1, new: 2))
    }
}
