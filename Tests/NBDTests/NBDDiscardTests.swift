import Foundation
import Testing
import TestSupport

/// TRIM and WRITE_ZEROES from a real client (qemu-io with `--discard=unmap`): what the origin
/// frees becomes a hole clients see in its map, what a snapshot shares is kept, and the
/// snapshot never changes. Always in CI.
@Suite(.mayBlock, .serialized, .enabled(if: Environment.canRun(commands: ["qemu-io", "nbdinfo", "nbdcopy"])))
struct NBDDiscardTests {
    static let mib: UInt64 = 1 << 20

    private func qemuIO(_ uri: String, _ commands: [String]) throws {
        try Shell.check(["qemu-io", "-f", "raw", "--discard=unmap"] + commands.flatMap { ["-c", $0] } + ["-c", "flush", uri])
    }

    @Test func trimFreesWhatNoSnapshotSharesAndZeroingFollowsTheNoHoleFlag() throws {
        // `data`: 1 MiB of 0x41 at 0 and 64 KiB of 0x42 at 16 MiB; `snap` (64K chunks) holds
        // the chunk at 24 MiB, written since.
        let pool = try NBDBlockStatusTests.pool()
        let server = try ServeProcess(pool: pool)
        let info = try Shell.check(["nbdinfo", server.uri("data")]).text
        #expect(info.contains("can_trim: true"), "\(info)")

        // TRIM of everything: only the chunk at 24 MiB is the origin's alone.
        try qemuIO(server.uri("data"), ["discard 0 32M"])
        let mib = Self.mib
        #expect(try NBDBlockStatusTests.map(server.uri("data"))
                == [[0, mib, 0], [mib, 15 * mib, 3], [16 * mib, 65536, 0], [16 * mib + 65536, 16 * mib - 65536, 3]])
        // Zeroes without permission to punch (qemu sets NO_HOLE): written, after copying into
        // the snapshot, and written again where the snapshot holds them now; then with it
        // (`-u`): a hole.
        try qemuIO(server.uri("data"), ["write -z 0 1M", "write -z 16M 64K", "write -z 0 1M"])
        #expect(try NBDBlockStatusTests.map(server.uri("data"))
                == [[0, mib, 0], [mib, 15 * mib, 3], [16 * mib, 65536, 0], [16 * mib + 65536, 16 * mib - 65536, 3]])
        try qemuIO(server.uri("data"), ["write -z -u 0 1M", "read -P 0 0 1M", "read -P 0 16M 64K"])
        #expect(try NBDBlockStatusTests.map(server.uri("data"))
                == [[0, 16 * mib, 3], [16 * mib, 65536, 0], [16 * mib + 65536, 16 * mib - 65536, 3]])

        // The snapshot reads as it was taken.
        try Shell.check(["nbdcopy", server.uri("snap"), pool.file("snap.img")])
        var expected = [UInt8](repeating: 0, count: 32 << 20)
        expected.replaceSubrange(0..<(1 << 20), with: repeatElement(0x41, count: 1 << 20))
        expected.replaceSubrange((16 << 20)..<(16 << 20) + 65536, with: repeatElement(0x42, count: 65536))
        #expect(sameBytes([UInt8](FileManager.default.contents(atPath: pool.file("snap.img"))!), expected))
        // A TRIM on a snapshot is accepted and changes nothing.
        try qemuIO(server.uri("snap"), ["discard 0 1M", "read -P 0x41 0 1M"])
        #expect(server.stop() == 0)
    }
}
