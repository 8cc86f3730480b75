import BlockDevices
import ExceptionMachinery
import Testing
@testable import VolumeTargets

/// Runs of copies: consecutive chunks whose store chunks are also consecutive, for the same
/// snapshots, become one job; anything else stays apart.
@Suite struct CopyJobTests {
    private func job(_ geometry: ChunkGeometry, _ chunk: ChunkIndex, _ targets: [(Snapshot, ChunkIndex)]) -> CopyJob {
        var job = CopyJob(geometry: geometry, chunk: chunk)
        for (snapshot, new) in targets { job.add(snapshot, PendingException(old: chunk, new: new)) }
        return job
    }

    @Test func consecutiveChunksWithConsecutiveStoreChunksFormOneRun() async throws {
        let origin = Origin(name: "origin", device: MemoryBlockDevice(name: "origin", size: 1 << 20))
        let a = try await origin.snapshot("a")
        let b = try await origin.snapshot("b")
        let geometry = try ChunkGeometry(chunkBytes: 4096)
        // Unordered input, as a dictionary of jobs hands them over.
        let jobs = [job(geometry, 12, [(a, 7), (b, 3)]), job(geometry, 10, [(a, 5), (b, 1)]), job(geometry, 11, [(a, 6), (b, 2)])]
        let runs = CopyJob.runs(of: jobs)
        #expect(runs.count == 1)
        #expect(runs[0].chunk == 10 && runs[0].count == 3 && runs[0].bytes == 3 * 4096)
        #expect(runs[0].targets.map { $0.pending.map(\.new) } == [[5, 6, 7], [1, 2, 3]])
        #expect(runs[0].targets.map { $0.pending.map(\.old) } == [[10, 11, 12], [10, 11, 12]])
    }

    @Test func gapsTargetChangesAndTheSizeCapSplitRuns() async throws {
        let origin = Origin(name: "origin", device: MemoryBlockDevice(name: "origin", size: 4 << 20))
        let a = try await origin.snapshot("a")
        let b = try await origin.snapshot("b")
        let geometry = try ChunkGeometry(chunkBytes: 4096)
        // Store chunk 9 skipped (a metadata area sits there): 8 and 10 cannot share a write.
        #expect(CopyJob.runs(of: [job(geometry, 0, [(a, 8)]), job(geometry, 1, [(a, 10)])]).count == 2)
        // Origin chunks 0 and 2 are not consecutive.
        #expect(CopyJob.runs(of: [job(geometry, 0, [(a, 8)]), job(geometry, 2, [(a, 9)])]).count == 2)
        // Different snapshots need the chunks.
        #expect(CopyJob.runs(of: [job(geometry, 0, [(a, 8)]), job(geometry, 1, [(a, 9), (b, 4)])]).count == 2)
        #expect(CopyJob.runs(of: [job(geometry, 0, [(a, 8)]), job(geometry, 1, [(b, 9)])]).count == 2)
        // Different chunk sizes never join.
        let large = try ChunkGeometry(chunkBytes: 8192)
        #expect(CopyJob.runs(of: [job(geometry, 0, [(a, 8)]), job(large, 1, [(a, 9)])]).count == 2)
        // 1 MiB at most: 300 consecutive 4 KiB chunks make runs of 256 and 44.
        let many = (0..<300).map { job(geometry, ChunkIndex($0), [(a, ChunkIndex(100 + $0))]) }
        #expect(CopyJob.runs(of: many).map(\.count) == [256, 44])
    }
}
