import BlockDevices
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// One timed measurement: how long a workload took and what it moved.
public struct Sample: Sendable, Codable, Equatable {
    public var seconds: Double
    public var bytes: UInt64
    public var operations: Int
    /// Heap allocations of the whole process while it ran; nil when not counted
    /// (`AllocationCounter.available` is nil).
    public var allocations: Int?

    public init(seconds: Double, bytes: UInt64, operations: Int, allocations: Int? = nil) {
        self.seconds = seconds
        self.bytes = bytes
        self.operations = operations
        self.allocations = allocations
    }

    /// The sample of median duration (the upper middle one of an even count).
    static func median(_ samples: [Sample]) -> Sample {
        precondition(!samples.isEmpty, "a median needs samples")
        return samples.sorted { $0.seconds < $1.seconds }[samples.count / 2]
    }

    public var mebibytesPerSecond: Double { seconds > 0 ? Double(bytes) / 1_048_576 / seconds : 0 }
    public var operationsPerSecond: Double { seconds > 0 ? Double(operations) / seconds : 0 }
    public var allocationsPerOperation: Double? {
        allocations.map { operations > 0 ? Double($0) / Double(operations) : 0 }
    }
}

/// Something requests can be sent to: a raw device or an engine volume.
public struct IOTarget: Sendable {
    public let read: @Sendable (UnsafeMutableRawBufferPointer, UInt64) async throws -> Void
    public let write: @Sendable (UnsafeRawBufferPointer, UInt64) async throws -> Void
    public let flush: @Sendable () async throws -> Void

    public init(read: @escaping @Sendable (UnsafeMutableRawBufferPointer, UInt64) async throws -> Void,
                write: @escaping @Sendable (UnsafeRawBufferPointer, UInt64) async throws -> Void,
                flush: @escaping @Sendable () async throws -> Void) {
        self.read = read
        self.write = write
        self.flush = flush
    }

    public static func device(_ device: any BlockDevice) -> IOTarget {
        IOTarget(read: { try await device.read(into: $0, at: $1) },
                 write: { try await device.write($0, at: $1) },
                 flush: { try await device.flush() })
    }
}

/// Sends a pattern's requests like fio's psync engine: one at a time (queue depth 1) from one
/// reused buffer, then (for writes) a flush that is part of the timed interval.
///
/// Invariants: the buffer is allocated before the clock starts, so the figure is the target's
/// cost, not the driver's; and every dirty page of earlier cases is written back first
/// (`sync`), so no case pays for the write-back or the freed files of the one before it.
public enum IODriver {
    /// Whether a pattern's requests read or write.
    public enum Direction: Sendable { case read, write }

    public static func run(_ pattern: IOPattern, _ direction: Direction, on target: IOTarget, fill: UInt8 = 0x5A) async throws -> Sample {
        let buffer = AlignedBuffer(count: pattern.blockBytes)
        buffer.fill(fill)
        return try await time(bytes: pattern.bytes, operations: pattern.offsets.count) {
            switch direction {
            case .read:
                for offset in pattern.offsets { try await target.read(buffer.mutableBytes, offset) }
            case .write:
                for offset in pattern.offsets { try await target.write(buffer.bytes, offset) }
                try await target.flush()
            }
        }
    }

    /// Writes back every dirty page of the machine and waits (sync(2)).
    static func settle() { sync() }

    /// Times `body` as `operations` operations moving `bytes`, counting its allocations when
    /// the process can (`AllocationCounter`).
    public static func time(bytes: UInt64, operations: Int = 1, _ body: () async throws -> Void) async throws -> Sample {
        settle()
        let start = DispatchTime.now().uptimeNanoseconds
        var allocations: Int?
        if let counter = AllocationCounter.available {
            allocations = try await counter.counting(body).1
        } else {
            try await body()
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        return Sample(seconds: seconds, bytes: bytes, operations: operations, allocations: allocations)
    }
}
