import AsyncPrimitives
import BlockDevices
import ExceptionMachinery
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
