import Synchronization

/// Read and write counts of one volume, updated without locks.
public final class IOCounters: Sendable {
    private let readOps = Atomic<UInt64>(0)
    private let readBytes = Atomic<UInt64>(0)
    private let writeOps = Atomic<UInt64>(0)
    private let writeBytes = Atomic<UInt64>(0)

    public init() {}

    func countRead(_ bytes: Int) {
        readOps.wrappingAdd(1, ordering: .relaxed)
        readBytes.wrappingAdd(UInt64(bytes), ordering: .relaxed)
    }

    func countWrite(_ bytes: Int) {
        writeOps.wrappingAdd(1, ordering: .relaxed)
        writeBytes.wrappingAdd(UInt64(bytes), ordering: .relaxed)
    }

    public var snapshot: IOFigures {
        IOFigures(readOps: readOps.load(ordering: .relaxed), readBytes: readBytes.load(ordering: .relaxed),
                  writeOps: writeOps.load(ordering: .relaxed), writeBytes: writeBytes.load(ordering: .relaxed))
    }
}

/// A point-in-time copy of `IOCounters`.
public struct IOFigures: Sendable, Equatable, Codable {
    public var readOps: UInt64 = 0
    public var readBytes: UInt64 = 0
    public var writeOps: UInt64 = 0
    public var writeBytes: UInt64 = 0

    public init() {}

    public init(readOps: UInt64, readBytes: UInt64, writeOps: UInt64, writeBytes: UInt64) {
        self.readOps = readOps
        self.readBytes = readBytes
        self.writeOps = writeOps
        self.writeBytes = writeBytes
    }
}
