import Synchronization

/// Reusable aligned buffers for hot paths (chunk copies, queued writes, NBD requests), so
/// steady-state I/O allocates nothing and touches no fresh pages.
///
/// Buffers come in size classes (powers of two from 4 KiB), so requests of many sizes (copy
/// runs of 1 to 256 chunks, NBD requests of any length) share a few lists instead of one list
/// per exact size.
///
/// Invariants: a buffer is handed to at most one owner at a time; idle buffers total at most
/// `idleLimit` bytes (a returned buffer beyond it is freed), so the pool's idle memory is
/// bounded whatever sizes pass through it. Buffers come back with stale contents; owners
/// overwrite.
public final class BufferPool: Sendable {
    public static let shared = BufferPool()

    private struct Idle {
        /// Idle buffers by size class (index `classIndex(of:)`), as addresses (their memory is
        /// owned by the pool while listed). An array, not a dictionary keyed by size: a
        /// dictionary's in-place `modify` allocates its coroutine frames, on every take and give.
        var lists = [[UInt]](repeating: [], count: Int.bitWidth)
        var bytes = 0
    }

    /// The most bytes idle buffers may hold together.
    public let idleLimit: Int
    private let idle = Mutex(Idle())
    private let alignment = 4096

    public init(idleLimit: Int = 64 << 20) { self.idleLimit = idleLimit }

    /// Bytes held by idle buffers now.
    public var idleBytes: Int { idle.withLock { $0.bytes } }

    /// A buffer of at least `count` bytes (`count` of them visible), aligned for O_DIRECT.
    public func take(_ count: Int) -> PooledBuffer {
        let size = Self.sizeClass(of: count)
        let reused = idle.withLock { idle -> UInt? in
            guard let address = idle.lists[Self.classIndex(of: size)].popLast() else { return nil }
            idle.bytes -= size
            return address
        }
        let base = reused.flatMap { UnsafeMutableRawPointer(bitPattern: $0) }
            ?? UnsafeMutableRawPointer.allocate(byteCount: size, alignment: alignment)
        return PooledBuffer(base: base, count: count, capacity: size, pool: self)
    }

    /// The smallest power of two at least `count` and at least 4 KiB.
    static func sizeClass(of count: Int) -> Int {
        count <= 4096 ? 4096 : 1 << (Int.bitWidth - (count - 1).leadingZeroBitCount)
    }

    /// Where a size class's list is: its power of two.
    private static func classIndex(of size: Int) -> Int { size.trailingZeroBitCount }

    fileprivate func give(_ base: UnsafeMutableRawPointer, capacity: Int) {
        let kept = idle.withLock { idle -> Bool in
            guard idle.bytes + capacity <= idleLimit else { return false }
            idle.lists[Self.classIndex(of: capacity)].append(UInt(bitPattern: base))
            idle.bytes += capacity
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
    private let capacity: Int
    private let pool: BufferPool

    fileprivate init(base: UnsafeMutableRawPointer, count: Int, capacity: Int, pool: BufferPool) {
        self.base = base
        self.count = count
        self.capacity = capacity
        self.pool = pool
    }

    public var mutableBytes: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: base, count: count) }
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    public func release() { pool.give(base, capacity: capacity) }
}
