import Synchronization

/// Reusable aligned buffers for hot paths (chunk copies, queued writes), so steady-state I/O
/// allocates nothing and touches no fresh pages.
///
/// Invariants: a buffer is handed to at most one owner at a time; at most `keepPerSize`
/// buffers of each size wait in the pool (the rest are freed), so it never holds more than
/// that many idle buffers per size. Buffers come back with stale contents; owners overwrite.
public final class BufferPool: Sendable {
    public static let shared = BufferPool()

    private let keepPerSize: Int
    /// Idle buffers by size, as addresses (their memory is owned by the pool while listed).
    private let free = Mutex<[Int: [UInt]]>([:])
    private let alignment = 4096

    public init(keepPerSize: Int = 64) { self.keepPerSize = keepPerSize }

    /// A buffer of exactly `count` bytes, aligned for O_DIRECT.
    public func take(_ count: Int) -> PooledBuffer {
        let reused = free.withLock { lists -> UInt? in lists[count]?.popLast() }
        let base = reused.flatMap { UnsafeMutableRawPointer(bitPattern: $0) } ?? UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: alignment)
        return PooledBuffer(base: base, count: count, pool: self)
    }

    fileprivate func give(_ base: UnsafeMutableRawPointer, count: Int) {
        let kept = free.withLock { lists -> Bool in
            guard lists[count, default: []].count < keepPerSize else { return false }
            lists[count, default: []].append(UInt(bitPattern: base))
            return true
        }
        if !kept { base.deallocate() }
    }
}

/// A buffer lent by a `BufferPool`; it goes back when released.
///
/// Invariant: `release` is called exactly once, after the last use of the bytes.
public struct PooledBuffer: @unchecked Sendable {
    // @unchecked Sendable: the pointer is owned by exactly one holder until `release`; holders
    // hand it between tasks only in a happens-before order (task creation, awaited events).
    private let base: UnsafeMutableRawPointer
    public let count: Int
    private let pool: BufferPool

    fileprivate init(base: UnsafeMutableRawPointer, count: Int, pool: BufferPool) {
        self.base = base
        self.count = count
        self.pool = pool
    }

    public var mutableBytes: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: base, count: count) }
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    public func release() { pool.give(base, count: count) }
}
