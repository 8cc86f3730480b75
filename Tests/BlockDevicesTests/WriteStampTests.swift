import BlockDevices
import Foundation
import Testing

/// Write stamps: what each kind says against an earlier stamp, and how they are stored (a pool
/// written before block devices had stamps holds file stamps without a kind).
@Suite struct WriteStampTests {
    static func counters(boot: String = "b", sequence: UInt64? = 7, written: UInt64, discarded: UInt64 = 0) -> WriteStamp {
        .device(.init(bootID: boot, diskSequence: sequence, sectorsWritten: written, sectorsDiscarded: discarded))
    }

    @Test func aBlockDevicesStampComparesOnlyWithinOneInstanceAndBoot() {
        let closed = Self.counters(written: 100, discarded: 10)
        #expect(closed.change(since: closed) == .unchanged)
        #expect(Self.counters(written: 108, discarded: 12).change(since: closed) == .written(bytes: 10 * 512))
        #expect(Self.counters(boot: "c", written: 100, discarded: 10).change(since: closed) == .unknowable(reason: "the host has restarted since"))
        #expect(Self.counters(sequence: 8, written: 100, discarded: 10).change(since: closed)
                == .unknowable(reason: "the device has been set up again since"))
        #expect(Self.counters(written: 99, discarded: 10).change(since: closed) == .unknowable(reason: "its write counters went back"))
        let file = WriteStamp.file(.init(modifiedSeconds: 5, modifiedNanoseconds: 0, size: 4096))
        #expect(file.change(since: closed) == .unknowable(reason: "it has changed between a file and a block device"))
    }

    @Test func aFilesStampSaysWhenItWasModified() {
        let closed = WriteStamp.file(.init(modifiedSeconds: 5, modifiedNanoseconds: 0, size: 4096))
        #expect(closed.change(since: closed) == .unchanged)
        let touched = WriteStamp.file(.init(modifiedSeconds: 6, modifiedNanoseconds: 500_000_000, size: 4096))
        #expect(touched.change(since: closed) == .modified(Date(timeIntervalSince1970: 6.5)))
        #expect(WriteStamp.file(.init(modifiedSeconds: 5, modifiedNanoseconds: 0, size: 8192)).change(since: closed) == .modified(Date(timeIntervalSince1970: 5)))
    }

    @Test func stampsAreStoredFlatAndOldFileStampsStillRead() throws {
        let old = #"{"modified_seconds":5,"modified_nanoseconds":6,"size":4096}"#
        #expect(try JSONDecoder().decode(WriteStamp.self, from: Data(old.utf8)) == .file(.init(modifiedSeconds: 5, modifiedNanoseconds: 6, size: 4096)))
        for stamp in [Self.counters(written: 3, discarded: 4), Self.counters(sequence: nil, written: 3)] {
            let encoded = try JSONEncoder().encode(stamp)
            #expect(try JSONDecoder().decode(WriteStamp.self, from: encoded) == stamp, "\(String(decoding: encoded, as: UTF8.self))")
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        #expect(String(decoding: try encoder.encode(Self.counters(written: 3, discarded: 4)), as: UTF8.self)
                == #"{"boot_id":"b","disk_sequence":7,"sectors_discarded":4,"sectors_written":3}"#)
    }
}
