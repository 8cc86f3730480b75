import BlockDevices
import DequeModule

/// Reads metadata areas ahead of the scan that decodes them: up to `depth` reads in flight,
/// so activating a large COW on a slow device waits about once per window, not once per area.
///
/// Invariants: areas are returned strictly in order, each read once; nothing past the
/// device's end is read; reads still in flight when the scan stops are cancelled and their
/// results dropped (reads have no side effects).
struct AreaReadAhead {
    let device: any BlockDevice
    let layout: CowLayout
    let depth: Int
    private var pending: Deque<(area: UInt64, read: Task<[UInt8], any Error>)> = []
    private var nextToIssue: UInt64 = 0

    init(device: any BlockDevice, layout: CowLayout, depth: Int = 8) {
        self.device = device
        self.layout = layout
        self.depth = depth
    }

    /// The bytes of `area`, which must be the area after the previous call's (from 0).
    mutating func read(_ area: UInt64) async throws -> [UInt8] {
        issue(upTo: area + UInt64(depth))
        guard let first = pending.first, first.area == area else {
            preconditionFailure("areas are read in order")
        }
        pending.removeFirst()
        return try await first.read.value
    }

    /// Drops the reads still in flight.
    mutating func stop() {
        for entry in pending { entry.read.cancel() }
        pending.removeAll()
    }

    private mutating func issue(upTo limit: UInt64) {
        let chunkBytes = layout.geometry.chunkBytes
        while nextToIssue < limit {
            let location = layout.areaLocation(nextToIssue)
            guard (location + 1) * UInt64(chunkBytes) <= device.size else { return }
            let (device, offset) = (device, layout.areaOffset(nextToIssue))
            pending.append((nextToIssue, Task { try await device.readBytes(at: offset, count: chunkBytes) }))
            nextToIssue += 1
        }
    }
}
