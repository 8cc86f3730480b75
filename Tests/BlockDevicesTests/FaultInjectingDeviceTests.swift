import BlockDevices
import Testing
import TestSupport

@Suite struct FaultInjectingDeviceTests {
    @Test func failsOnlyTheGivenRange() async throws {
        let device = FaultInjectingDevice(wrapping: MemoryBlockDevice(size: 65536))
        device.fail(.write, in: 4096..<8192)
        try await device.writeBytes([1, 2, 3], at: 0)
        await #expect(throws: DeviceError.self) { try await device.writeBytes([1], at: 5000) }
        #expect(try await device.readBytes(at: 5000, count: 1) == [0])
        device.clearFaults()
        try await device.writeBytes([1], at: 5000)
    }

    @Test func failsAfterNWrites() async throws {
        let device = FaultInjectingDevice(wrapping: MemoryBlockDevice(size: 4096))
        device.failWrites(after: 2)
        try await device.writeBytes([1], at: 0)
        try await device.writeBytes([1], at: 1)
        await #expect(throws: DeviceError.self) { try await device.writeBytes([1], at: 2) }
        #expect(device.counters.writes == 2)
    }

    @Test func holdKeepsAnIOInFlightUntilReleased() async throws {
        let device = FaultInjectingDevice(wrapping: MemoryBlockDevice(size: 4096))
        let hold = device.hold(.write, in: 0..<512)
        let writer = Task { try await device.writeBytes([42], at: 10) }
        await hold.arrived.wait()
        #expect(try await device.base.readBytes(at: 10, count: 1) == [0])
        hold.release()
        try await writer.value
        #expect(try await device.readBytes(at: 10, count: 1) == [42])
    }

    @Test func disappearedDeviceFailsEverything() async throws {
        let device = FaultInjectingDevice(wrapping: MemoryBlockDevice(size: 4096))
        device.disappear()
        let error = await #expect(throws: DeviceError.self) { try await device.readBytes(at: 0, count: 1) }
        #expect(error?.errno == .noSuchAddressOrDevice)
    }

    @Test func powerCutKeepsFlushedDataAndOnlyTearsUnflushedWrites() async throws {
        var generator = SeededGenerator.fromEnvironment()
        let memory = MemoryBlockDevice(size: 16384)
        let device = FaultInjectingDevice(wrapping: memory)
        device.trackUnflushedWrites()
        try await device.writeBytes([UInt8](repeating: 1, count: 4096), at: 0)
        try await device.flush()
        for i in 0..<8 { try await device.writeBytes([UInt8](repeating: UInt8(2 + i), count: 1024), at: 4096 + UInt64(i) * 1024) }
        #expect(device.unflushedWriteCount == 8)
        try await device.powerCut(using: &generator)
        let after = memory.contents
        #expect(Array(after[0..<4096]) == [UInt8](repeating: 1, count: 4096), "seed \(generator.seed)")
        for i in 0..<8 {
            for sector in 0..<2 {
                let start = 4096 + i * 1024 + sector * 512
                let bytes = Set(after[start..<start + 512])
                #expect(bytes == [0] || bytes == [UInt8(2 + i)], "sector torn inside, seed \(generator.seed)")
            }
        }
        await #expect(throws: DeviceError.self) { try await device.readBytes(at: 0, count: 1) }
    }
}
