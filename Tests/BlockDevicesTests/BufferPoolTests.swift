import Testing
@testable import BlockDevices

/// The pool reuses buffers by size class and never keeps more idle bytes than its limit.
@Suite struct BufferPoolTests {
    @Test func sizeClassesArePowersOfTwoFromFourKiB() {
        #expect(BufferPool.sizeClass(of: 0) == 4096)
        #expect(BufferPool.sizeClass(of: 1) == 4096)
        #expect(BufferPool.sizeClass(of: 4096) == 4096)
        #expect(BufferPool.sizeClass(of: 4097) == 8192)
        #expect(BufferPool.sizeClass(of: 12288) == 16384)
        #expect(BufferPool.sizeClass(of: 1 << 20) == 1 << 20)
        #expect(BufferPool.sizeClass(of: (1 << 20) + 1) == 2 << 20)
    }

    @Test func buffersOfOneClassAreReused() {
        let pool = BufferPool(idleLimit: 1 << 20)
        let first = pool.take(12288)
        #expect(first.count == 12288 && Int(bitPattern: first.bytes.baseAddress) % 4096 == 0)
        let address = first.bytes.baseAddress
        first.release()
        #expect(pool.idleBytes == 16384)
        let second = pool.take(16000)
        #expect(second.bytes.baseAddress == address && second.count == 16000)
        #expect(pool.idleBytes == 0)
        second.release()
    }

    @Test func idleBytesStayWithinTheLimitWhateverSizesPassThrough() {
        let pool = BufferPool(idleLimit: 256 << 10)
        var held: [PooledBuffer] = []
        for size in stride(from: 4096, through: 1 << 20, by: 4096) { held.append(pool.take(size)) }
        for buffer in held { buffer.release() }
        #expect(pool.idleBytes <= 256 << 10)
        #expect(pool.idleBytes > 0)
    }
}
