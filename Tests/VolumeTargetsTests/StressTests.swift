import AsyncPrimitives
import BlockDevices
import ExceptionMachinery
import Synchronization
import Testing
import TestSupport
import VolumeTargets

/// Concurrency stress: writer and reader tasks on overlapping chunks of one origin with 1 and 8
/// snapshots (created while the writers run); some writes are discards and zeroings. Devices add random small delays so that copies,
/// commits and reads interleave differently on every run. Afterwards every snapshot must equal
/// the origin image at its creation; a deadline turns a deadlock into a failure.
@Suite struct StressTests {
    @Test(arguments: [1, 8])
    func concurrentWritersAndReaders(snapshotCount: Int) async throws {
        let seed = SeededGenerator.fromEnvironment().seed
        let chunkBytes = 4096
        let size = 64 * chunkBytes
        let base = patternedDevice(size: size)
        let device = FaultInjectingDevice(wrapping: base)
        device.delay(.read, in: 0..<UInt64(size / 2), by: .microseconds(50))
        let origin = Origin(name: "origin", device: device, copier: ChunkCopier(maxBytesInFlight: 4 * chunkBytes))
        let taken = TakenSnapshots()
        let originLock = AsyncLock()
        let writes = WriteCounter()
        let threshold: @Sendable (Int) -> Int = { $0 * 1600 / (snapshotCount + 1) }

        // Alone a case takes under a second. In the full suite, tests waiting for subprocesses
        // hold Swift's cooperative threads (two here), and a case once passed a 30 s deadline
        // (seed 8121602136406546296, fine alone). Now the body runs on `DedicatedExecutor` and
        // its delays are dispatch-timed: in one full-suite run each, the two bodies took 0.2 and
        // 4.9 s (7.7 and 18.5 s before; 2.0 and 7.0 s with the executor but `Task.sleep`). 120 s
        // still turns a deadlock into a failure.
        try await withDeadline(120, "stress with \(snapshotCount) snapshots, seed \(seed)") {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for writer in 0..<4 {
                    group.addTask {
                        var generator = SeededGenerator(seed: seed &+ UInt64(writer))
                        for _ in 0..<400 {
                            let offset = UInt64.random(in: 0..<UInt64(size - 3 * chunkBytes), using: &generator)
                            let length = Int.random(in: 1...(2 * chunkBytes), using: &generator)
                            let value = UInt8.random(in: 0...255, using: &generator)
                            // One request in eight discards, one zeroes (deallocating or not).
                            let kind = Int.random(in: 0..<8, using: &generator), deallocate = Bool.random(using: &generator)
                            // Do not run far ahead of the snapshot creations (the scheduler may
                            // otherwise finish every write before the creator task starts).
                            while taken.all.count < snapshotCount && writes.value >= threshold(taken.all.count) + 40 {
                                await dispatchPause(for: .microseconds(100))
                            }
                            try await originLock.shared {
                                switch kind {
                                case 0: _ = try await origin.discard(offset: offset, length: UInt64(length))
                                case 1: try await origin.writeZeroes(offset: offset, length: UInt64(length), mayDeallocate: deallocate)
                                default: try await origin.writeBytes(pattern(value, length), at: offset)
                                }
                            }
                            writes.increment()
                        }
                    }
                }
                group.addTask {
                    for i in 0..<snapshotCount {
                        // Spread the creations over the writers' run.
                        while writes.value < threshold(i) { await dispatchPause(for: .microseconds(100)) }
                        let chunk = [4096, 16384, 65536][i % 3]
                        // Quiesce writers so the reference image is exact at the moment of creation.
                        try await originLock.exclusive {
                            let image = base.contents
                            let snapshot = try await origin.snapshot("s\(i)", chunkBytes: chunk)
                            taken.append(snapshot, image)
                        }
                    }
                }
                for reader in 0..<3 {
                    group.addTask {
                        var generator = SeededGenerator(seed: seed &+ 200 &+ UInt64(reader))
                        for _ in 0..<150 {
                            let snapshots = taken.all
                            guard let (snapshot, image) = snapshots.randomElement(using: &generator) else {
                                await dispatchPause(for: .microseconds(100))
                                continue
                            }
                            let offset = Int.random(in: 0..<(size - chunkBytes), using: &generator)
                            let bytes = try await snapshot.readBytes(at: UInt64(offset), count: chunkBytes)
                            if bytes != Array(image[offset..<offset + chunkBytes]) {
                                Issue.record("\(snapshot.name) read at \(offset) is wrong during the run; seed \(seed)")
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        for (snapshot, image) in taken.all {
            #expect(try await snapshot.image() == image, "\(snapshot.name) differs; seed \(seed)")
            #expect(snapshot.status.pendingExceptions == 0)
            #expect(snapshot.status.condition == .active)
        }
        #expect(taken.all.count == snapshotCount)
        let exceptions = taken.all.reduce(0) { $0 + $1.0.status.exceptions }
        #expect(exceptions > 0, "the writers must have raced the snapshots; seed \(seed)")
    }
}

/// Snapshots created during the run, with the origin image at their creation.
final class TakenSnapshots: Sendable {
    private let list = Mutex<[(Snapshot, [UInt8])]>([])
    var all: [(Snapshot, [UInt8])] { list.withLock { $0 } }
    func append(_ snapshot: Snapshot, _ image: [UInt8]) { list.withLock { $0.append((snapshot, image)) } }
}

final class WriteCounter: Sendable {
    private let count = Atomic<Int>(0)
    var value: Int { count.load(ordering: .relaxed) }
    func increment() { count.add(1, ordering: .relaxed) }
}

/// A writer-preferring readers-writer lock for tasks: the stress test's writers share it; snapshot creation takes
/// it exclusively so the reference image it records is exact.
final class AsyncLock: Sendable {
    private struct State {
        var readers = 0
        var writer = false
        var exclusiveWaiting = 0
        var waiting: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    func shared<T: Sendable>(_ body: () async throws -> T) async rethrows -> T {
        await acquire { !$0.writer && $0.exclusiveWaiting == 0 } take: { $0.readers += 1 }
        defer { release { $0.readers -= 1 } }
        return try await body()
    }

    func exclusive<T: Sendable>(_ body: () async throws -> T) async rethrows -> T {
        state.withLock { $0.exclusiveWaiting += 1 }
        await acquire { !$0.writer && $0.readers == 0 } take: {
            $0.writer = true
            $0.exclusiveWaiting -= 1
        }
        defer { release { $0.writer = false } }
        return try await body()
    }

    private func acquire(when ready: @escaping (State) -> Bool, take: @escaping (inout State) -> Void) async {
        while true {
            let acquired = state.withLock { state -> Bool in
                guard ready(state) else { return false }
                take(&state)
                return true
            }
            if acquired { return }
            await withCheckedContinuation { continuation in
                let retryNow = state.withLock { state -> Bool in
                    if ready(state) { return true }
                    state.waiting.append(continuation)
                    return false
                }
                if retryNow { continuation.resume() }
            }
        }
    }

    private func release(_ change: (inout State) -> Void) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            change(&state)
            defer { state.waiting = [] }
            return state.waiting
        }
        for waiter in waiters { waiter.resume() }
    }
}
