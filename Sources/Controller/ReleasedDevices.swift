import BlockDevices
import ExceptionMachinery
import VolumeTargets

/// The devices of volumes a closing controller let go of, held weakly: each is gone once no
/// volume, task or caller holds it any more, its descriptor closed and its image locks with it.
///
/// Invariant: holds no device alive; `waitUntilClosed` returns once all are gone or the
/// deadline passes, and says which.
struct ReleasedDevices {
    private struct Entry { weak var device: (any BlockDevice)? }
    private var entries: [Entry] = []

    mutating func add(_ device: any BlockDevice) { entries.append(Entry(device: device)) }

    mutating func add(_ live: LiveOrigin) {
        if let origin = live.origin { add(origin.device) }
        for snapshot in live.snapshots.values { add(snapshot.store.device) }
    }

    mutating func add(_ remap: RemapVolume) {
        add(remap.data)
        add(remap.store.device)
    }

    /// Whether every device is gone.
    var allClosed: Bool { entries.allSatisfy { $0.device == nil } }

    /// Waits, polling every millisecond, until every device is gone (a task that finished its
    /// last I/O may hold its volume a moment longer) or `limit` passes, as when a client still
    /// holds a volume; returns whether all are gone.
    func waitUntilClosed(limit: Duration) async -> Bool {
        let deadline = ContinuousClock.now + limit
        while !allClosed {
            guard ContinuousClock.now < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(1))
        }
        return true
    }
}
