import ExceptionMachinery

/// The reads one snapshot read turns into: extents of consecutive bytes on one device, and the
/// origin reads it tracks (so origin writes wait for them).
///
/// Invariant: extents are in buffer order and never overlap; adjacent pieces whose device
/// offsets are also adjacent on the same device share one extent.
struct ReadPlan {
    enum Source { case store, origin }

    struct Extent {
        let source: Source
        let deviceOffset: UInt64
        let bufferOffset: Int
        var length: Int
    }

    var extents: [Extent] = []
    var tracked: [ChunkKey] = []
    /// How many pieces the plan covers.
    var pieces = 0

    mutating func add(_ piece: ChunkPiece, from source: Source, at deviceOffset: UInt64) {
        pieces += 1
        if var last = extents.last, last.source == source,
           last.deviceOffset + UInt64(last.length) == deviceOffset, last.bufferOffset + last.length == piece.bufferOffset {
            last.length += piece.length
            extents[extents.count - 1] = last
        } else {
            extents.append(Extent(source: source, deviceOffset: deviceOffset, bufferOffset: piece.bufferOffset, length: piece.length))
        }
    }
}
