import AsyncPrimitives
import BlockDevices
@testable import ExceptionMachinery
import Synchronization
import Testing
import TestSupport

/// The copier's memory bound, and the weighted, first-come-first-served semaphore under it.
@Suite struct ChunkCopierTests {
    /// With room for 64 KiB, a second 64 KiB copy waits until the first one's write ends, and
    /// the bytes held never exceed the bound.
    @Test func copiesWaitForRoomInBytes() async throws {
        let source = MemoryBlockDevice(name: "source", contents: (0..<(256 << 10)).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        let target = FaultInjectingDevice(wrapping: MemoryBlockDevice(name: "target", size: 256 << 10))
        let copier = ChunkCopier(maxBytesInFlight: 64 << 10)
        let held = target.hold(.write, in: 0..<(64 << 10))
        let first = Task {
            try await copier.copy(from: source, at: 0, length: 64 << 10, to: CopyDestination(device: target, offset: 0))
        }
        await held.arrived.wait()
        #expect(copier.bytesInFlight == 64 << 10)
        let secondDone = Log()
        let second = Task {
            try await copier.copy(from: source, at: 64 << 10, length: 64 << 10, to: CopyDestination(device: target, offset: 64 << 10))
            secondDone.append("done")
        }
        for _ in 0..<200 { await Task.yield() }
        #expect(secondDone.entries.isEmpty, "the second copy must wait for room")
        #expect(copier.bytesInFlight == 64 << 10)
        held.release()
        try await first.value
        try await second.value
        #expect(copier.bytesInFlight == 0)
        let copied = try await target.readBytes(at: 0, count: 128 << 10)
        #expect(copied == (0..<(128 << 10)).map { UInt8(truncatingIfNeeded: $0 &* 7) })
    }

    /// A waiter for many permits is served before later waiters for fewer, in arrival order;
    /// a request above the limit takes the whole semaphore instead of waiting forever.
    @Test func semaphoreServesWeightedWaitersInOrder() async throws {
        let semaphore = AsyncSemaphore(limit: 4)
        await semaphore.acquire(3)
        let order = Log()
        let big = Task {
            await semaphore.acquire(4)
            order.append("big")
            semaphore.release(4)
        }
        await eventuallyTrue { semaphore.waiting == 1 }
        let small = Task {
            await semaphore.acquire(1)
            order.append("small")
            semaphore.release(1)
        }
        await eventuallyTrue { semaphore.waiting == 2 }
        #expect(order.entries.isEmpty, "one permit is free, but the big waiter came first")
        semaphore.release(3)
        await big.value
        await small.value
        #expect(order.entries == ["big", "small"])
        await semaphore.acquire(100)
        #expect(semaphore.inUse == 4)
        semaphore.release(100)
        #expect(semaphore.inUse == 0)
    }
}

/// The copier's writes that would change nothing.
@Suite struct ZeroCopyTests {

    /// A chunk of zeros bound for a hole is not written (the destination file stays sparse and
    /// reads the same); zeros bound for data, and any other bytes, are.
    @Test func zerosAreNotWrittenOverAHole() async throws {
        let dir = try TemporaryDirectory()
        let source = try FileBlockDevice.create(path: dir.file("source.img"), size: 1 << 20)
        try await source.writeBytes([UInt8](repeating: 0x5A, count: 65536), at: 0)
        let destination = try FileBlockDevice.create(path: dir.file("cow.img"), size: 1 << 20)
        try await destination.writeBytes([UInt8](repeating: 0x77, count: 65536), at: 131072)
        let copier = ChunkCopier()
        for (from, to) in [(65536, 262144), (65536, 131072), (0, 393216)] as [(UInt64, UInt64)] {
            try await copier.copy(from: source, at: from, length: 65536, to: CopyDestination(device: destination, offset: to))
        }
        try await destination.flush()
        #expect(try destination.dataExtents(in: 262144..<327680).isEmpty, "zeros over a hole: not written")
        #expect(try await destination.readBytes(at: 131072, count: 65536) == [UInt8](repeating: 0, count: 65536), "zeros over data: written")
        #expect(try await destination.readBytes(at: 393216, count: 65536) == [UInt8](repeating: 0x5A, count: 65536))
        #expect(try await destination.readBytes(at: 262144, count: 65536) == [UInt8](repeating: 0, count: 65536))
    }

    @Test func zeroScanFindsAnyNonZeroByte() {
        for count in [0, 1, 7, 8, 9, 4096, 4099] {
            let zeros = [UInt8](repeating: 0, count: count)
            #expect(zeros.withUnsafeBytes(ChunkCopier.isZero))
            for position in Set([0, count / 2, count - 1]) where count > 0 {
                var bytes = zeros
                bytes[position] = 1
                #expect(!bytes.withUnsafeBytes(ChunkCopier.isZero), "count \(count), byte \(position)")
            }
        }
    }
}

/// Strings appended from several tasks.
private final class Log: Sendable {
    private let lines = Mutex<[String]>([])
    var entries: [String] { lines.withLock { $0 } }
    func append(_ line: String) { lines.withLock { $0.append(line) } }
}

private func eventuallyTrue(_ condition: () -> Bool) async {
    for _ in 0..<20_000 {
        if condition() { return }
        try? await Task.sleep(for: .microseconds(100))
    }
    Issue.record("timed out")
}
