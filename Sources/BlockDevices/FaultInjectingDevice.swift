import AsyncPrimitives
import Synchronization
import SystemPackage

/// A wrapper that injects the failures a real device cannot be made to produce on demand:
/// errors on given ranges, failure after N writes, I/O held at a gate until a test releases it,
/// delays, a device that disappears, and power cuts that drop unflushed writes.
///
/// Invariant: with no rule installed it behaves exactly like the wrapped device.
public final class FaultInjectingDevice: ResizableDevice {
    /// The kind of I/O a rule or hold applies to.
    public enum Operation: Sendable { case read, write, flush }

    /// An I/O held in flight: the first matching operation signals `arrived` and then waits
    /// until the test calls `release()`.
    public final class Hold: Sendable {
        public let operation: Operation
        public let range: Range<UInt64>
        public let arrived = OneShotEvent<Void>()
        let released = OneShotEvent<Void>()

        init(operation: Operation, range: Range<UInt64>) {
            self.operation = operation
            self.range = range
        }

        public func release() { released.signal() }
    }

    /// Counts of operations that reached the wrapped device.
    public struct Counters: Sendable, Equatable {
        public var reads = 0
        public var writes = 0
        public var flushes = 0
    }

    private struct UnflushedWrite {
        let offset: UInt64
        let before: [UInt8]
        let after: [UInt8]
    }

    private struct State {
        var failing: [(Operation, Range<UInt64>)] = []
        var writesBeforeFailure: Int?
        var holds: [Hold] = []
        var delays: [(Operation, Range<UInt64>, Duration)] = []
        var unflushed: [UnflushedWrite]?
        /// The size before the first resize since the last flush (a power cut may revert it).
        var sizeBeforeResize: UInt64?
        var gone = false
        var failResize = false
        var counters = Counters()
        /// Operations admitted and not yet finished on the wrapped device.
        var inFlight = 0
    }

    public let base: any BlockDevice
    private let state = Mutex(State())
    private let rail: PowerRail?

    /// - Parameter rail: devices on one rail lose power at the same instant (`PowerRail.cut`).
    public init(wrapping base: any BlockDevice, rail: PowerRail? = nil) {
        self.base = base
        self.rail = rail
    }

    public var name: String { base.name }
    public var size: UInt64 { base.size }
    public var alignment: Int { base.alignment }
    public var isReadOnly: Bool { base.isReadOnly }
    public var counters: Counters { state.withLock { $0.counters } }

    // MARK: rules

    /// Every `operation` touching `range` fails with EIO until `clearFaults()`.
    public func fail(_ operation: Operation, in range: Range<UInt64> = 0..<UInt64.max) {
        state.withLock { $0.failing.append((operation, range)) }
    }

    /// The next `count` writes succeed; every write after them fails with EIO.
    public func failWrites(after count: Int) { state.withLock { $0.writesBeforeFailure = count } }

    /// Growing the device fails with ENOSPC, as a full file system does.
    public func failResize() { state.withLock { $0.failResize = true } }

    /// Every `operation` touching `range` is delayed by `duration`.
    public func delay(_ operation: Operation, in range: Range<UInt64> = 0..<UInt64.max, by duration: Duration) {
        state.withLock { $0.delays.append((operation, range, duration)) }
    }

    /// Holds the next `operation` touching `range` until the returned hold is released.
    public func hold(_ operation: Operation, in range: Range<UInt64> = 0..<UInt64.max) -> Hold {
        let hold = Hold(operation: operation, range: range)
        state.withLock { $0.holds.append(hold) }
        return hold
    }

    /// The device vanishes (as a detached loop device): every later operation fails with ENXIO.
    public func disappear() { state.withLock { $0.gone = true } }

    public func clearFaults() {
        state.withLock {
            $0.failing = []
            $0.writesBeforeFailure = nil
            $0.delays = []
            $0.failResize = false
        }
    }

    // MARK: power cuts

    /// Starts remembering writes since the last flush, so that `powerCut` can drop them.
    public func trackUnflushedWrites() { state.withLock { $0.unflushed = [] } }

    /// Number of writes that a power cut now could lose.
    public var unflushedWriteCount: Int { state.withLock { $0.unflushed?.count ?? 0 } }

    /// Simulates losing power: each write since the last flush is kept, dropped, or torn at
    /// 512-byte sector granularity, chosen by `generator`. The device is then gone.
    /// Returns the number of writes not kept whole.
    @discardableResult
    public func powerCut<G: RandomNumberGenerator>(using generator: inout G) async throws -> Int {
        state.withLock { $0.gone = true }
        // Writes already admitted still reach the medium (they were "in the disk's queue").
        while state.withLock({ $0.inFlight }) > 0 { await Task.yield() }
        let (writes, oldSize) = state.withLock { state -> ([UnflushedWrite], UInt64?) in
            defer {
                state.unflushed = []
                state.sizeBeforeResize = nil
            }
            return (state.unflushed ?? [], state.sizeBeforeResize)
        }
        for write in writes.reversed() { try await base.writeBytes(write.before, at: write.offset) }
        var damaged = 0
        for write in writes {
            let kept = Self.survivingBytes(of: write, using: &generator)
            if kept != write.after { damaged += 1 }
            try await base.writeBytes(kept, at: write.offset)
        }
        // A resize not yet flushed may be lost too (as a file's new size without fdatasync).
        if let oldSize, Bool.random(using: &generator), let resizable = base as? any ResizableDevice {
            try await resizable.resize(to: oldSize)
            damaged += 1
        }
        try await base.flush()
        return damaged
    }

    private static func survivingBytes<G: RandomNumberGenerator>(of write: UnflushedWrite, using generator: inout G) -> [UInt8] {
        switch Int.random(in: 0..<3, using: &generator) {
        case 0: return write.after
        case 1: return write.before
        default:
            var bytes = write.before
            for start in stride(from: 0, to: bytes.count, by: 512) where Bool.random(using: &generator) {
                let end = min(start + 512, bytes.count)
                bytes.replaceSubrange(start..<end, with: write.after[start..<end])
            }
            return bytes
        }
    }

    // MARK: BlockDevice

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) async throws {
        try await admit(.read, offset: offset, length: buffer.count)
        defer { finishOperation() }
        try await base.read(into: buffer, at: offset)
    }

    public func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) async throws {
        try await admit(.write, offset: offset, length: buffer.count)
        defer { finishOperation() }
        let before = try await bytesBeforeWrite(at: offset, count: buffer.count)
        try await base.write(buffer, at: offset)
        track(before, after: Array(buffer), at: offset)
    }

    /// Ruled like a write; a power cut may lose it like one (it then reads as before, partly).
    public func deallocate(_ range: Range<UInt64>) async throws -> Bool {
        try await admit(.write, offset: range.lowerBound, length: range.count)
        defer { finishOperation() }
        let before = try await bytesBeforeWrite(at: range.lowerBound, count: range.count)
        guard try await base.deallocate(range) else { return false }
        track(before, after: [UInt8](repeating: 0, count: range.count), at: range.lowerBound)
        return true
    }

    /// The bytes a write is about to replace, while unflushed writes are tracked.
    private func bytesBeforeWrite(at offset: UInt64, count: Int) async throws -> [UInt8]? {
        guard state.withLock({ $0.unflushed != nil }) else { return nil }
        return try await base.readBytes(at: offset, count: count)
    }

    private func track(_ before: [UInt8]?, after: [UInt8], at offset: UInt64) {
        guard let before else { return }
        state.withLock { $0.unflushed?.append(UnflushedWrite(offset: offset, before: before, after: after)) }
    }

    public func flush() async throws {
        try await admit(.flush, offset: 0, length: 0)
        defer { finishOperation() }
        try await base.flush()
        state.withLock { state in
            if state.unflushed != nil { state.unflushed = [] }
            state.sizeBeforeResize = nil
        }
    }

    public func startWriteback(offset: UInt64, length: Int) {
        base.startWriteback(offset: offset, length: length)
    }

    public func releaseCachedPages(offset: UInt64, length: Int) {
        base.releaseCachedPages(offset: offset, length: length)
    }

    public func prefetch(offset: UInt64, length: Int) {
        base.prefetch(offset: offset, length: length)
    }

    /// The wrapped device's: where data lies is not an I/O (lseek touches no medium).
    public func dataExtents(in range: Range<UInt64>) throws -> [Range<UInt64>] {
        try base.dataExtents(in: range)
    }

    public func resize(to newSize: UInt64) async throws {
        let refuse = state.withLock { $0.failResize || $0.gone }
        if refuse { throw DeviceError.system(operation: "resize", device: name, errno: .noSpace) }
        guard let resizable = base as? any ResizableDevice else {
            throw DeviceError.system(operation: "resize", device: name, errno: .notSupported)
        }
        let oldSize = base.size
        state.withLock { state in
            if state.unflushed != nil && state.sizeBeforeResize == nil { state.sizeBeforeResize = oldSize }
        }
        try await resizable.resize(to: newSize)
    }

    private func finishOperation() { state.withLock { $0.inFlight -= 1 } }

    /// Applies the installed rules to one operation: counts it, then holds, delays or fails it.
    private func admit(_ operation: Operation, offset: UInt64, length: Int) async throws {
        let touched = offset..<(offset + UInt64(max(length, 1)))
        let powered = rail?.isOn ?? true
        let verdict = state.withLock { state -> (error: DeviceError?, hold: Hold?, delay: Duration?) in
            if state.gone || !powered {
                return (.system(operation: "\(operation)", device: name, errno: .noSuchAddressOrDevice), nil, nil)
            }
            let applies: (Operation, Range<UInt64>) -> Bool = { op, range in
                op == operation && (operation == .flush || range.overlaps(touched))
            }
            if state.failing.contains(where: { applies($0.0, $0.1) }) {
                return (.injected(device: name, operation: "\(operation)", offset: offset), nil, nil)
            }
            if operation == .write, let remaining = state.writesBeforeFailure {
                if remaining == 0 { return (.injected(device: name, operation: "write", offset: offset), nil, nil) }
                state.writesBeforeFailure = remaining - 1
            }
            state.inFlight += 1
            switch operation {
            case .read: state.counters.reads += 1
            case .write: state.counters.writes += 1
            case .flush: state.counters.flushes += 1
            }
            var hold: Hold?
            if let index = state.holds.firstIndex(where: { applies($0.operation, $0.range) }) {
                hold = state.holds.remove(at: index)
            }
            let delay = state.delays.first(where: { applies($0.0, $0.1) })?.2
            return (nil, hold, delay)
        }
        if let error = verdict.error { throw error }
        if let hold = verdict.hold {
            hold.arrived.signal()
            await hold.released.wait()
        }
        if let delay = verdict.delay { await dispatchPause(for: delay) }
    }
}

/// The power supply of several fault-injecting devices: cutting it stops them all at once, so a
/// simulated power cut never leaves one device running while another has died.
public final class PowerRail: Sendable {
    private let on = Atomic<Bool>(true)

    public init() {}

    public var isOn: Bool { on.load(ordering: .acquiring) }

    public func cut() { on.store(false, ordering: .releasing) }
}
