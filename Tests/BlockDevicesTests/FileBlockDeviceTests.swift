import Foundation
import BlockDevices
import SystemPackage
import Testing
import TestSupport

@Suite struct FileBlockDeviceTests {
    @Test func createdFileIsSparseAndRoundTrips() async throws {
        let dir = try TemporaryDirectory()
        let device = try FileBlockDevice.create(path: dir.file("a.img"), size: 1 << 20)
        #expect(device.size == 1 << 20)
        #expect(device.kind == .regularFile)
        let data = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        try await device.writeBytes(data, at: 4095)
        try await device.flush()
        #expect(try await device.readBytes(at: 4095, count: data.count) == data)
        #expect(try await device.readBytes(at: 0, count: 16) == [UInt8](repeating: 0, count: 16))
    }

    @Test func dataExtentsFollowTheFilesHoles() async throws {
        let dir = try TemporaryDirectory()
        let device = try FileBlockDevice.create(path: dir.file("sparse.img"), size: 16 << 20)
        #expect(try device.dataExtents(in: 0..<(16 << 20)) == [])
        try await device.writeBytes([UInt8](repeating: 1, count: 4096), at: 1 << 20)
        try await device.writeBytes([UInt8](repeating: 2, count: 65536), at: 8 << 20)
        let first: Range<UInt64> = (1 << 20)..<(1 << 20) + 4096, second: Range<UInt64> = (8 << 20)..<(8 << 20) + 65536
        #expect(try device.dataExtents(in: 0..<(16 << 20)) == [first, second])
        // Clipped to the range asked about, from inside an extent.
        #expect(try device.dataExtents(in: (1 << 20) + 512..<(8 << 20) + 4096) == [(1 << 20) + 512..<first.upperBound, second.lowerBound..<(8 << 20) + 4096])
        #expect(try device.dataExtents(in: (2 << 20)..<(3 << 20)) == [])
        // A device that cannot tell calls everything data.
        #expect(try MemoryBlockDevice(name: "m", size: 8192).dataExtents(in: 0..<8192) == [0..<8192])
    }

    /// A punched range becomes a hole that reads as zeros; blocks it only partly covers keep
    /// their other bytes.
    @Test func deallocateLeavesAHoleThatReadsAsZeros() async throws {
        let dir = try TemporaryDirectory()
        let device = try FileBlockDevice.create(path: dir.file("punch.img"), size: 1 << 20)
        try await device.writeBytes([UInt8](repeating: 0x33, count: 1 << 20), at: 0)
        #expect(try await device.deallocate(65536..<196608))
        #expect(try await device.deallocate(300_000..<300_100))
        try await device.flush()
        #expect(try device.dataExtents(in: 0..<(1 << 20)) == [0..<65536, 196608..<(1 << 20)])
        #expect(try await device.readBytes(at: 65536, count: 131072) == [UInt8](repeating: 0, count: 131072))
        let ragged = try await device.readBytes(at: 299_999, count: 102)
        #expect(ragged == [0x33] + [UInt8](repeating: 0, count: 100) + [0x33])
        await #expect(throws: DeviceError.self) { try await device.deallocate(0..<(2 << 20)) }
        let readOnly = try FileBlockDevice.open(path: dir.file("punch.img"), readOnly: true)
        await #expect(throws: DeviceError.readOnly(device: dir.file("punch.img"))) { try await readOnly.deallocate(0..<4096) }
        #expect(try await device.readBytes(at: 0, count: 4) == [0x33, 0x33, 0x33, 0x33])
    }

    @Test func accessPastTheEndIsRefusedWithTheDeviceNamed() async throws {
        let dir = try TemporaryDirectory()
        let device = try FileBlockDevice.create(path: dir.file("b.img"), size: 8192)
        await #expect(throws: DeviceError.outOfRange(device: dir.file("b.img"), offset: 8000, length: 512, size: 8192)) {
            try await device.writeBytes([UInt8](repeating: 1, count: 512), at: 8000)
        }
    }

    @Test func errorsCarryErrnoAndPath() throws {
        let error = #expect(throws: DeviceError.self) { try FileBlockDevice.open(path: "/nonexistent/x.img") }
        #expect(error?.errno == .noSuchFileOrDirectory)
        #expect(error?.description.contains("/nonexistent/x.img") == true)
    }

    @Test func createRefusesAnExistingPath() async throws {
        let dir = try TemporaryDirectory()
        _ = try FileBlockDevice.create(path: dir.file("c.img"), size: 4096)
        let error = #expect(throws: DeviceError.self) { try FileBlockDevice.create(path: dir.file("c.img"), size: 4096) }
        #expect(error?.errno == .fileExists)
    }

    @Test func readOnlyDeviceRefusesWrites() async throws {
        let dir = try TemporaryDirectory()
        _ = try FileBlockDevice.create(path: dir.file("r.img"), size: 4096)
        let device = try FileBlockDevice.open(path: dir.file("r.img"), readOnly: true)
        await #expect(throws: DeviceError.readOnly(device: dir.file("r.img"))) { try await device.writeBytes([1], at: 0) }
    }

    @Test func directIORequiresAlignmentAndWorksWhenAligned() async throws {
        let dir = try TemporaryDirectory()
        _ = try FileBlockDevice.create(path: dir.file("d.img"), size: 1 << 16)
        let device = try FileBlockDevice.open(path: dir.file("d.img"), direct: true)
        #expect(device.alignment >= 512)
        let buffer = AlignedBuffer(count: 4096, alignment: 4096)
        buffer.fill(0xAB)
        try await device.write(buffer.bytes, at: 8192)
        let back = AlignedBuffer(count: 4096, alignment: 4096)
        try await device.read(into: back.mutableBytes, at: 8192)
        #expect(back.array == buffer.array)
        await #expect(throws: DeviceError.self) { try await device.write(buffer.bytes, at: 100) }
    }

    @Test func resizeGrowsAFile() async throws {
        let dir = try TemporaryDirectory()
        let device = try FileBlockDevice.create(path: dir.file("g.img"), size: 4096)
        try await device.resize(to: 8192)
        #expect(device.size == 8192)
        try await device.writeBytes([9], at: 8191)
        #expect(try FileBlockDevice.open(path: dir.file("g.img")).size == 8192)
    }

    @Test func directoryIsNotADevice() throws {
        let dir = try TemporaryDirectory()
        #expect(throws: DeviceError.notADevice(device: dir.path)) { try FileBlockDevice.open(path: dir.path) }
    }
}

/// Real block devices: a loop device over a temp file. Needs root and losetup (always in CI).
@Suite(.serialized, .enabled(if: Environment.canRun(needsRoot: true, commands: ["losetup", "blkdiscard", "dd"])))
struct LoopDeviceTests {
    @Test func blockDeviceSizeComesFromTheIoctlAndIOWorks() async throws {
        let dir = try TemporaryDirectory()
        let loop = try LoopDevice(backingFile: dir.file("loop.img"), size: 8 << 20)
        defer { loop.detach() }
        let device = try FileBlockDevice.open(path: loop.path)
        #expect(device.kind == .blockDevice)
        #expect(device.size == 8 << 20)
        let data = [UInt8](repeating: 0x5A, count: 65536)
        try await device.writeBytes(data, at: 1 << 20)
        try await device.flush()
        #expect(try await device.readBytes(at: 1 << 20, count: data.count) == data)
    }

    @Test func aBlockDeviceInUseIsRefused() async throws {
        let dir = try TemporaryDirectory()
        let loop = try LoopDevice(backingFile: dir.file("busy.img"), size: 1 << 20)
        defer { loop.detach() }
        let first = try FileBlockDevice.open(path: loop.path)
        let error = #expect(throws: DeviceError.self) { try FileBlockDevice.open(path: loop.path) }
        #expect(error?.errno == .resourceBusy)
        _ = first
    }

    /// A block device zeroes whole sectors by discarding them (the loop driver punches its
    /// backing file); a range not aligned to sectors is refused without a change.
    @Test func deallocateZeroesWholeSectorsOfABlockDevice() async throws {
        let dir = try TemporaryDirectory()
        let loop = try LoopDevice(backingFile: dir.file("discard.img"), size: 4 << 20)
        defer { loop.detach() }
        let device = try FileBlockDevice.open(path: loop.path)
        try await device.writeBytes([UInt8](repeating: 0x5A, count: 4 << 20), at: 0)
        try await device.flush()
        #expect(try await device.deallocate(1000..<5000) == false)
        #expect(try await device.readBytes(at: 1000, count: 4000) == [UInt8](repeating: 0x5A, count: 4000))
        #expect(try await device.deallocate((1 << 20)..<(3 << 20)))
        try await device.flush()
        #expect(try await device.readBytes(at: 1 << 20, count: 2 << 20) == [UInt8](repeating: 0, count: 2 << 20))
        #expect(try await device.readBytes(at: (1 << 20) - 4, count: 4) == [0x5A, 0x5A, 0x5A, 0x5A])
        #expect(try await device.readBytes(at: 3 << 20, count: 4) == [0x5A, 0x5A, 0x5A, 0x5A])
    }

    /// A block device's write stamp counts the sectors written and discarded through it by
    /// anyone (another descriptor here); reads leave it as it was; set up again, the device is
    /// another instance and the stamps cannot be compared.
    @Test func aBlockDevicesStampCountsWritesThroughIt() async throws {
        let dir = try TemporaryDirectory()
        let loop = try LoopDevice(backingFile: dir.file("stamped.img"), size: 4 << 20)
        defer { loop.detach() }
        let stampOf = { () throws -> WriteStamp in
            let device = try FileBlockDevice.open(path: loop.path, readOnly: true)
            return try #require(try device.stamp())
        }
        let first = try stampOf()
        guard case .device(let counters) = first else { Issue.record("\(first)"); return }
        #expect(counters.bootID.count == 36 && counters.diskSequence != nil, "\(counters)")
        try Shell.check(["dd", "if=\(loop.path)", "of=/dev/null", "bs=64k", "count=16", "iflag=direct"])
        #expect(try stampOf().change(since: first) == .unchanged, "reads")
        try Shell.check(["dd", "if=/dev/zero", "of=\(loop.path)", "bs=4k", "count=2", "seek=5", "oflag=direct", "conv=notrunc"])
        let written = try stampOf()
        #expect(written.change(since: first) == .written(bytes: 8192))
        try Shell.check(["blkdiscard", "--offset", "1048576", "--length", "65536", loop.path])
        #expect(try stampOf().change(since: written) == .written(bytes: 65536))
        try loop.setUpAgain()
        #expect(try stampOf().change(since: written) == .unknowable(reason: "the device has been set up again since"))
    }

    /// A block device is known by what it is, not by its node: a loop device by its backing
    /// file; a file has no identity. (Partitions, known by their disk and number, are not
    /// tested: this machine's kernel reads no partition tables.)
    @Test func aBlockDeviceIsIdentifiedWhateverItsName() async throws {
        let dir = try TemporaryDirectory()
        let loop = try LoopDevice(backingFile: dir.file("disk.img"), size: 1 << 20)
        defer { loop.detach() }
        #expect(try FileBlockDevice.open(path: loop.path, readOnly: true).identity() == "loop over \(dir.file("disk.img"))")
        #expect(try FileBlockDevice.open(path: dir.file("disk.img"), readOnly: true).identity() == nil, "a file")
        _ = FileManager.default.createFile(atPath: dir.file("other.img"), contents: Data(count: 4096))
        try loop.setUpAgain(over: dir.file("other.img"))
        #expect(try FileBlockDevice.open(path: loop.path, readOnly: true).identity() == "loop over \(dir.file("other.img"))")
    }

    @Test func directIOOnABlockDevice() async throws {
        let dir = try TemporaryDirectory()
        let loop = try LoopDevice(backingFile: dir.file("direct.img"), size: 1 << 20)
        defer { loop.detach() }
        let device = try FileBlockDevice.open(path: loop.path, direct: true)
        let buffer = AlignedBuffer(count: 8192, alignment: device.alignment)
        buffer.fill(7)
        try await device.write(buffer.bytes, at: 4096)
        #expect(try await device.readBytes(at: 4096, count: 8192) == buffer.array)
    }
}

/// The cache hints of a file device act on the page cache (checked with `mincore`).
@Suite struct FileCacheHintTests {
    /// A prefetch of 32 MiB reads all of it in: asked for in one piece, this kernel read only
    /// its first 8 MiB (the device's read-ahead window). Read-ahead is best effort: under load
    /// (CI, session 15) it once left 48 of the 8,192 pages out, so the test asks for 95% of the
    /// pages and some of every 1 MiB piece, where one call would give 25% and no piece past 8 MiB.
    @Test func prefetchReadsTheWholeRangeIn() async throws {
        let dir = try TemporaryDirectory()
        guard try PageResidency.canTestResidency(in: dir.path) else { return }
        let length = 32 << 20
        let path = dir.file("data")
        let device = try FileBlockDevice.create(path: path, size: UInt64(length))
        try await device.writeBytes([UInt8](repeating: 0x7E, count: length), at: 0)
        try await device.dropCachedPages()
        #expect(try PageResidency.residentPages(path: path, offset: 0, length: length) == 0)
        device.prefetch(offset: 0, length: length)
        var resident = 0
        for _ in 0..<100 {
            resident = try PageResidency.residentPages(path: path, offset: 0, length: length)
            if resident == length / 4096 { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(resident * 100 >= length / 4096 * 95, "\(resident) of \(length / 4096) pages read in")
        let piece = FileBlockDevice.prefetchPiece
        for offset in stride(from: 0, to: length, by: piece) {
            #expect(try PageResidency.residentPages(path: path, offset: UInt64(offset), length: piece) > 0, "nothing read in at \(offset)")
        }
    }

    @Test func releaseDropsCleanPagesAndKeepsNewerData() async throws {
        let dir = try TemporaryDirectory()
        guard try PageResidency.canTestResidency(in: dir.path) else { return }
        let path = dir.file("data")
        let mib = 1 << 20
        let device = try FileBlockDevice.create(path: path, size: UInt64(2 * mib))
        for half in 0..<2 { try await device.writeBytes([UInt8](repeating: 0x11, count: mib), at: UInt64(half * mib)) }
        try await device.flush()
        // Dirty again: written back, not dropped, with the rest of its (large) page-cache folio.
        try await device.writeBytes([UInt8](repeating: 0x22, count: 4096), at: UInt64(mib))
        device.releaseCachedPages(offset: 0, length: 2 * mib)
        #expect(try PageResidency.residentPages(path: path, offset: 0, length: mib) == 0)
        #expect(try await device.readBytes(at: UInt64(mib), count: 4096) == [UInt8](repeating: 0x22, count: 4096))
    }
}
