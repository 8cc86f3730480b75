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

    /// Writes the bytes to `device` at `offset`, one device write per piece.
    func write(to device: any BlockDevice, at offset: UInt64) async throws {
        if let single { return try await device.write(single, at: offset) }
        var at = offset
        for piece in pieces {
            try await device.write(piece, at: at)
            at += UInt64(piece.count)
        }
    }

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
