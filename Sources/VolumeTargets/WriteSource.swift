import BlockDevices

/// The bytes of one write: one buffer, or pieces to be written in order as if they were one
/// (a network payload as it arrived, read buffer by read buffer).
///
/// Invariant: `count` is the sum of the pieces' counts; the pieces stay valid (the caller's)
/// for as long as the write that uses them runs.
struct WriteSource {
    let pieces: [UnsafeRawBufferPointer]
    let count: Int
    /// The one piece, when there is just one (the common case, reached without an array).
    private let single: UnsafeRawBufferPointer?

    init(_ buffer: UnsafeRawBufferPointer) {
        pieces = []
        count = buffer.count
        single = buffer
    }

    init(_ pieces: [UnsafeRawBufferPointer]) {
        self.pieces = pieces.count == 1 ? [] : pieces
        count = pieces.reduce(0) { $0 + $1.count }
        single = pieces.count == 1 ? pieces[0] : nil
    }

    /// Copies every byte, in order, to the start of `target` (at least `count` bytes).
    func copy(into target: UnsafeMutableRawBufferPointer) {
        if let single { return target.copyMemory(from: single) }
        var at = 0
        for piece in pieces {
            UnsafeMutableRawBufferPointer(rebasing: target[at..<at + piece.count]).copyMemory(from: piece)
            at += piece.count
        }
    }

    /// The page size every device write below starts and ends on, where the write's own ends
    /// allow: a write ending inside a page the page cache does not hold makes the kernel read
    /// that page first (pieces cut where the socket reads ended measured 551 MiB/s on
    /// sequential 1M rewrites with the origin out of the page cache, against 802 whole).
    static let pageBytes = 4096

    /// Writes the bytes to `device` at `offset` without gathering them: each piece's run of
    /// whole pages goes as it is, and each page a boundary between pieces falls inside is
    /// assembled in a small buffer and written whole.
    func write(to device: any BlockDevice, at offset: UInt64) async throws {
        if let single { return try await device.write(single, at: offset) }
        let page = AlignedBuffer(count: Self.pageBytes)
        var pending = 0          // bytes of the page being assembled, starting at `at - pending`
        var at = offset          // the device offset of the next byte
        for piece in pieces where piece.count > 0 {
            var rest = piece
            if pending > 0 || Self.pageOffset(at) != 0 && at != offset {
                // Complete the page this piece starts inside.
                let take = min(rest.count, Self.pageBytes - Self.pageOffset(at))
                UnsafeMutableRawBufferPointer(rebasing: page.mutableBytes[pending..<pending + take])
                    .copyMemory(from: UnsafeRawBufferPointer(rebasing: rest[0..<take]))
                pending += take
                at += UInt64(take)
                rest = UnsafeRawBufferPointer(rebasing: rest[take...])
                if Self.pageOffset(at) == 0 {
                    try await device.write(UnsafeRawBufferPointer(rebasing: page.bytes[0..<pending]), at: at - UInt64(pending))
                    pending = 0
                }
            }
            // The piece's whole pages (or, for the first piece, everything up to its last page boundary).
            let whole = rest.count - Self.pageOffset(at + UInt64(rest.count))
            if whole > 0 {
                try await device.write(UnsafeRawBufferPointer(rebasing: rest[0..<whole]), at: at)
                at += UInt64(whole)
                rest = UnsafeRawBufferPointer(rebasing: rest[whole...])
            }
            // A tail inside a page: kept for the next piece to complete.
            if rest.count > 0 {
                UnsafeMutableRawBufferPointer(rebasing: page.mutableBytes[pending..<pending + rest.count]).copyMemory(from: rest)
                pending += rest.count
                at += UInt64(rest.count)
            }
        }
        if pending > 0 { try await device.write(UnsafeRawBufferPointer(rebasing: page.bytes[0..<pending]), at: at - UInt64(pending)) }
    }

    private static func pageOffset(_ offset: UInt64) -> Int { Int(offset % UInt64(pageBytes)) }

    /// Runs `body` on the bytes as one buffer: the one piece itself, or the pieces gathered
    /// into a pooled buffer for the duration.
    func withContiguousBytes<T>(_ body: (UnsafeRawBufferPointer) async throws -> T) async throws -> T {
        if let single { return try await body(single) }
        let gathered = BufferPool.shared.take(count)
        defer { gathered.release() }
        copy(into: gathered.mutableBytes)
        return try await body(UnsafeRawBufferPointer(rebasing: gathered.bytes[0..<count]))
    }
}
