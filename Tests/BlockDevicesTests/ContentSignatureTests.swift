import BlockDevices
import Foundation
import Testing
import TestSupport

/// libblkid names what a device already holds, from the device's own descriptor; a device of
/// zeros, or of data in no known format, holds nothing it knows.
@Suite(.enabled(if: Environment.canRun(commands: ["mkfs.ext4", "mkswap"])))
struct ContentSignatureTests {
    @Test func aFilesystemIsNamedWithItsLabel() throws {
        let dir = try TemporaryDirectory()
        _ = try FileBlockDevice.create(path: dir.file("fs.img"), size: 8 << 20)
        try Shell.check(["mkfs.ext4", "-q", "-L", "keep", dir.file("fs.img")])
        let signature = try FileBlockDevice.open(path: dir.file("fs.img"), readOnly: true).contentSignature()
        #expect(signature == ContentSignature(type: "ext4", usage: "filesystem", label: "keep"))
        #expect(signature?.description == "an ext4 filesystem labelled 'keep'")
    }

    @Test func swapAndAPartitionTableAreNamed() throws {
        let dir = try TemporaryDirectory()
        _ = try FileBlockDevice.create(path: dir.file("swap.img"), size: 8 << 20)
        try Shell.check(["mkswap", "-q", dir.file("swap.img")])
        #expect(try FileBlockDevice.open(path: dir.file("swap.img")).contentSignature()?.type == "swap")

        // An MBR with one Linux partition from sector 2048 to the end, written by hand.
        let disk = try FileBlockDevice.create(path: dir.file("disk.img"), size: 8 << 20)
        var mbr = [UInt8](repeating: 0, count: 512)
        let entry: [UInt8] = [0x00, 0, 0, 0, 0x83, 0, 0, 0] + le32(2048) + le32(16384 - 2048)
        mbr.replaceSubrange(446..<462, with: entry)
        (mbr[510], mbr[511]) = (0x55, 0xAA)
        try writeAtStart(disk, mbr)
        let table = try disk.contentSignature()
        #expect(table == ContentSignature(type: "dos", usage: nil, label: nil))
        #expect(table?.description == "a dos partition table")
    }

    @Test func zerosAndUnknownDataHoldNothingKnown() throws {
        let dir = try TemporaryDirectory()
        let device = try FileBlockDevice.create(path: dir.file("plain.img"), size: 4 << 20)
        #expect(try device.contentSignature() == nil)
        try writeAtStart(device, [UInt8](repeating: 0x41, count: 1 << 20))
        #expect(try device.contentSignature() == nil)
    }

    private func le32(_ value: UInt32) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }

    private func writeAtStart(_ device: FileBlockDevice, _ bytes: [UInt8]) throws {
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: device.name))
        try handle.write(contentsOf: Data(bytes))
        try handle.close()
    }
}
