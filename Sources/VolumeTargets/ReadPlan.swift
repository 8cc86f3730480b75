import ExceptionMachinery

/// The reads one snapshot read turns into: extents of consecutive bytes on one device, and the
/// token under which its origin extents are tracked (so origin writes wait for them).
///
/// Invariant: extents are in buffer order and never overlap; adjacent pieces whose device
/// offsets are also adjacent on the same device share one extent. A plan inside one chunk
/// allocates nothing.
struct ReadPlan {
    enum Source { case store, origin }

    struct Extent {
        let source: Source
        let deviceOffset: UInt64
        let bufferOffset: Int
        var length: Int

        var deviceRange: Range<UInt64> { deviceOffset..<deviceOffset + UInt64(length) }
    }

    private(set) var extents = SmallList<Extent>()
    /// Set once the plan's origin extents are tracked.
    var token: ReadTracker.Token?
    /// How many pieces the plan covers.
    private(set) var pieces = 0

    mutating func add(_ piece: ChunkPiece, from source: Source, at deviceOffset: UInt64) {
        pieces += 1
        if var last = extents.last, last.source == source,
           last.deviceOffset + UInt64(last.length) == deviceOffset, last.bufferOffset + last.length == piece.bufferOffset {
            last.length += piece.length
            extents.replaceLast(with: last)
        } else {
            extents.append(Extent(source: source, deviceOffset: deviceOffset, bufferOffset: piece.bufferOffset, length: piece.length))
        }
    }

    /// Tracks the plan's origin extents in `reads` under a new token (none if it has none).
    mutating func track(in reads: inout ReadTracker) {
        for extent in extents where extent.source == .origin {
            token = reads.track(extent.deviceRange, joining: token)
        }
    }
}
