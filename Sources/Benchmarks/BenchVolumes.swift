import BlockDevices
import ExceptionMachinery
import Foundation
import VolumeTargets

/// The files one benchmark round works on: an origin file filled with data, and COW files
/// created and deleted around each case.
///
/// Invariant: every file it creates lies in `directory` and is removed by `removeAll`.
final class BenchVolumes {
    let directory: String
    let originBytes: UInt64
    let originPath: String
    private var cowPaths: [String] = []

    init(directory: String, originBytes: UInt64) {
        self.directory = directory
        self.originBytes = originBytes
        self.originPath = "\(directory)/bench-origin.img"
    }

    /// Writes the origin file in full (allocated, non-zero), so rewrites never allocate.
    func createOrigin() async throws -> FileBlockDevice {
        try? FileManager.default.removeItem(atPath: originPath)
        let device = try FileBlockDevice.create(path: originPath, size: originBytes)
        let block = AlignedBuffer(count: 1 << 20)
        var offset: UInt64 = 0
        while offset < originBytes {
            block.fill(UInt8(truncatingIfNeeded: offset >> 20) | 1)
            let length = Int(min(UInt64(block.count), originBytes - offset))
            try await device.write(UnsafeRawBufferPointer(rebasing: block.bytes[0..<length]), at: offset)
            offset += UInt64(length)
        }
        try await device.flush()
        return device
    }

    /// A COW file large enough for every chunk of the origin plus its metadata.
    func cowBytes(for geometry: ChunkGeometry) -> UInt64 {
        let chunks = geometry.chunksCovering(originBytes)
        let perArea = UInt64(geometry.chunkBytes / 16)
        let areas = chunks / perArea + 2
        return (1 + chunks + areas + 2) * UInt64(geometry.chunkBytes)
    }

    /// Formats a fresh persistent store on a new sparse COW file and attaches it to `origin`.
    func addSnapshot(to origin: Origin, geometry: ChunkGeometry) async throws -> Snapshot {
        let path = "\(directory)/bench-cow-\(cowPaths.count).img"
        try? FileManager.default.removeItem(atPath: path)
        cowPaths.append(path)
        let device = try FileBlockDevice.create(path: path, size: cowBytes(for: geometry))
        let store = try await PersistentExceptionStore.format(device, geometry: geometry,
                                                              originChunks: geometry.chunksCovering(originBytes))
        return try await origin.attach(name: "bench-snap-\(cowPaths.count)", store: store)
    }

    /// Detaches `snapshots` and deletes their COW files.
    func removeSnapshots(_ snapshots: [Snapshot], from origin: Origin) async {
        for snapshot in snapshots {
            await origin.detach(snapshot)
            try? FileManager.default.removeItem(atPath: snapshot.store.device.name)
        }
    }

    func removeAll() {
        for path in cowPaths + [originPath] { try? FileManager.default.removeItem(atPath: path) }
        cowPaths = []
    }
}
