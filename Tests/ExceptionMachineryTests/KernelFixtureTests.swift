import BlockDevices
import ExceptionMachinery
import Testing
import TestSupport

/// COW devices written by the Linux kernel must read back exactly: the snapshot image rebuilt
/// from origin + COW equals the one the kernel's snapshot device returned, and the usage
/// figures equal the kernel's own `dmsetup status`.
@Suite struct KernelFixtureTests {
    @Test(arguments: KernelFixture.names)
    func scanReproducesKernelStatusAndSnapshotImage(_ name: String) async throws {
        let fixture = try KernelFixture.load(name)
        let origin = try fixture.image("origin")
        let cow = MemoryBlockDevice(name: "\(name)/cow", contents: try fixture.image("cow"))
        var records: [DiskException] = []
        let scan = try await CowScanner.scan(cow, originChunks: UInt64(origin.count) / UInt64(fixture.chunkSectors * 512)) {
            records.append($0)
        }
        #expect(scan.header.chunkSectors == fixture.chunkSectors)
        let sizeSectors = origin.count / 512
        if fixture.isInvalid {
            #expect(scan.state == .invalid)
            #expect(fixture.kernelStatus == "0 \(sizeSectors) snapshot Invalid")
            return
        }
        #expect("0 \(sizeSectors) snapshot \(scan.usage(deviceBytes: cow.size).dmStatus)" == fixture.kernelStatus)
        let chunkBytes = Int(fixture.chunkSectors) * 512
        var image = origin
        let cowBytes = cow.contents
        for record in records {
            let to = Int(record.old) * chunkBytes, from = Int(record.new) * chunkBytes
            image.replaceSubrange(to..<to + chunkBytes, with: cowBytes[from..<from + chunkBytes])
        }
        #expect(image == (try fixture.image("snapshot")))
    }

    @Test func twoAreaFixtureKeepsWriteOrderAndFillsAreaZero() async throws {
        let fixture = try KernelFixture.load("c8-two-areas")
        let cow = MemoryBlockDevice(contents: try fixture.image("cow"))
        var records: [DiskException] = []
        let scan = try await CowScanner.scan(cow) { records.append($0) }
        #expect(records.count == 300)
        #expect(scan.currentArea == 1)
        #expect(scan.currentAreaRecords.count == 44)
        #expect(records.map(\.new) == Array(2...257) + Array(259...302))
    }
}
