import BlockDevices
import Foundation
import Testing
import TestSupport
@testable import Controller

/// `Controller.close` lets go of every device before it returns, with its image locks: the
/// pool's files can be taken at once, by this process too (the demo and the tests reopen a
/// pool in the process that closed it), while the closed controller is still referenced.
@Suite(.mayBlock) struct PoolCloseTests {
    @Test func closingLetsGoOfEveryDeviceAtOnce() async throws {
        let pool = try TestPool.withOrigin("vm", size: "4M", pattern: "0x11")
        try pool.ok("snapshot", "create", "s", "--origin", "vm", "--cow", pool.file("s.cow"))
        try Shell.check(["truncate", "-s", "4M", pool.file("disk.img")])
        try pool.ok("remap", "create", "disk", "--device", pool.file("disk.img"), "--spare", pool.file("spare.img"), "--spare-size", "256K")
        let files = ["vm.img", "s.cow", "disk.img", "spare.img"].map(pool.file)
        let controller = try await Controller.open(PoolLocation(directory: pool.file("pool")), purpose: "test")
        try await controller.volume(named: "vm").writeBytes([UInt8](repeating: 0x22, count: 64 << 10), at: 0)
        for file in files {
            #expect(throws: DeviceError.self, "\(file) is locked while the pool is open") { try FileBlockDevice.open(path: file).lockedAsSoleWriter() }
        }

        await controller.close()
        for file in files {
            #expect(throws: Never.self, "\(file) is free once the pool is closed") { try FileBlockDevice.open(path: file).lockedAsSoleWriter() }
        }
        for name in ["vm", "s", "disk"] {
            #expect(throws: ControllerError.inactiveVolume(name: name, reason: Controller.closedReason)) { try controller.volume(named: name) }
        }
        withExtendedLifetime(controller) {}
    }
}
