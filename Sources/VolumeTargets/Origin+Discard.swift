import BlockDevices
import ExceptionMachinery

extension Origin {
    /// Chunk lookups a discard makes under one lock acquisition at most (as `mapChunks`).
    static let discardLookups = 8192
    /// The step a discard examines an origin without snapshots in.
    static let stepWithoutSnapshots: UInt64 = 1 << 20

    /// Discards (TRIM): deallocates the parts of the range no snapshot needs from the origin any
    /// longer (every snapshot receiving copies holds those chunks, and no snapshot read or queued
    /// write is in their way), and keeps the rest: a chunk still shared would have to be copied
    /// first, and a hint never costs a copy. While a merge runs, nothing is discarded.
    public func discard(offset: UInt64, length: UInt64) async throws -> UInt64 {
        try checkRange(offset: offset, length: length)
        return try await deallocateUnshared(offset..<offset + length).reduce(0) { $0 + UInt64($1.count) }
    }

    /// Zeroes the range: where `mayDeallocate`, by deallocating the parts `discard` would, and
    /// by ordinary writes (copying chunks into snapshots first) everywhere else.
    @discardableResult
    public func writeZeroes(offset: UInt64, length: UInt64, mayDeallocate: Bool) async throws -> UInt64 {
        try checkRange(offset: offset, length: length)
        let range = offset..<offset + length
        let freed = mayDeallocate ? try await deallocateUnshared(range) : []
        let freedBytes = freed.reduce(0) { $0 + $1.count }
        counters.countWrite(freedBytes)
        for gap in RangeMap(start: range.lowerBound, end: range.upperBound, ranges: freed).gaps {
            try await writeZeroBytes(gap)
        }
        return UInt64(freedBytes)
    }

    /// Deallocates the parts of `range` a write could go straight to the device with, and
    /// returns those the device gave back. Each batch is chosen under the lock and deallocated
    /// inside the gate, so no snapshot can join, no merge start, and no snapshot read be routed
    /// to those chunks before the device has dropped them.
    func deallocateUnshared(_ range: Range<UInt64>) async throws -> [Range<UInt64>] {
        var freed: [Range<UInt64>] = []
        var cursor = range.lowerBound
        while cursor < range.upperBound {
            let (unshared, next) = try await enterOwnGate { state in
                state.merge == nil ? Self.unsharedParts(&state, cursor..<range.upperBound) : ([], range.upperBound)
            }
            defer { leaveGate() }
            for part in unshared where try await device.deallocate(part) { freed.append(part) }
            cursor = next
        }
        return freed
    }

    /// Under the lock: the parts of a prefix of `range` that `isDirect` admits, examined in
    /// steps of the smallest chunk among the snapshots (aligned to it: one lookup per snapshot
    /// each), merged (`RangeMap`); and the end of that prefix, as long as `discardLookups`
    /// lookups allow.
    static func unsharedParts(_ state: inout OriginState, _ range: Range<UInt64>) -> ([Range<UInt64>], next: UInt64) {
        let chunkSizes = state.members.compactMap { state.tables[ObjectIdentifier($0)]?.geometry.chunkBytes }
        let step = chunkSizes.min().map(UInt64.init) ?? stepWithoutSnapshots
        var steps = max(1, discardLookups / max(1, chunkSizes.count))
        var parts: [Range<UInt64>] = []
        var cursor = range.lowerBound
        while cursor < range.upperBound && steps > 0 {
            let piece = cursor..<min(range.upperBound, (cursor / step + 1) * step)
            if isDirect(&state, piece) { parts.append(piece) }
            cursor = piece.upperBound
            steps -= 1
        }
        return (RangeMap(start: range.lowerBound, end: cursor, ranges: parts).ranges, cursor)
    }
}
