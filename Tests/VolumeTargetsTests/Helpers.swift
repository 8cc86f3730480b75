import AsyncPrimitives
import BlockDevices
import ExceptionMachinery
import Testing
import TestSupport
import VolumeTargets

/// Bytes `count` long, all `value`.
func pattern(_ value: UInt8, _ count: Int) -> [UInt8] { [UInt8](repeating: value, count: count) }

extension Origin {
    /// Creates a persistent snapshot on a fresh memory (or given) COW device.
    func snapshot(_ name: String, chunkBytes: Int = 4096, cow: (any BlockDevice)? = nil, cowBytes: Int? = nil) async throws -> Snapshot {
        let geometry = try ChunkGeometry(chunkBytes: chunkBytes)
        let chunks = CowLayout(geometry: geometry).chunksToHoldWholeOrigin(geometry.chunksCovering(size))
        let device = cow ?? MemoryBlockDevice(name: "\(name)-cow", size: cowBytes ?? Int(chunks) * chunkBytes)
        let store = try await PersistentExceptionStore.format(device, geometry: geometry)
        return try await attach(name: name, store: store)
    }
}

extension Snapshot {
    func image() async throws -> [UInt8] { try await readBytes(at: 0, count: Int(size)) }
}

/// A memory device filled with a recognisable, chunk-varying pattern.
func patternedDevice(_ name: String = "origin", size: Int) -> MemoryBlockDevice {
    MemoryBlockDevice(name: name, contents: (0..<size).map { UInt8(truncatingIfNeeded: $0 / 512 &* 31 &+ $0) })
}

/// Waits (yielding, with a generous bound) until `condition` holds; records an issue if it never does.
func eventually(_ what: String, _ condition: () -> Bool) async {
    for _ in 0..<20_000 {
        if condition() { return }
        try? await Task.sleep(for: .microseconds(100))
    }
    Issue.record("timed out waiting for: \(what)")
}

/// Runs `body` and fails the test instead of hanging if it takes longer than `seconds`. On a
/// deadline the body is cancelled and abandoned (a deadlocked body would never return).
/// The body runs on `DedicatedExecutor`'s threads, so tests blocking the cooperative threads
/// elsewhere in the suite do not eat into the deadline; the timer may then fire late, never early.
func withDeadline(_ seconds: Int, _ what: String, _ body: @escaping @Sendable () async throws -> Void) async throws {
    let outcome = OneShotEvent<Result<Bool, any Error>>()
    let work = Task(executorPreference: DedicatedExecutor.shared) {
        do {
            try await body()
            outcome.signal(.success(true))
        } catch {
            outcome.signal(.failure(error))
        }
    }
    let timer = Task {
        try? await Task.sleep(for: .seconds(seconds))
        outcome.signal(.success(false))
    }
    let result = await outcome.wait()
    timer.cancel()
    if case .success(false) = result {
        work.cancel()
        Issue.record("deadline of \(seconds) s passed: \(what) (deadlock?)")
        return
    }
    _ = try result.get()
}
