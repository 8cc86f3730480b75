import Controller
import Foundation
import Testing

@Suite(.mayBlock) struct AutoextendPolicyTests {
    static func report(fill: Double, state: String = "active", total: UInt64 = 1 << 20) -> SnapshotReport {
        let json = """
            {"name": "s", "origin": "o", "cow_path": "/s.cow", "chunk_size": 16384, "persistent": true, "exceptions": 1,
             "cow_used_bytes": 1, "cow_total_bytes": \(total), "fill_percent": \(fill), "pending_copies": 0,
             "state": "\(state)", "dm_status": "", "read_bytes": 0, "write_bytes": 0, "reason": "COW store full"}
            """
        return try! JSONDecoder().decode(SnapshotReport.self, from: Data(json.utf8))
    }

    @Test func warnsAt80AndEveryFivePercentOnce() throws {
        var policy = try AutoextendPolicy(thresholdPercent: nil, growPercent: 20)
        #expect(policy.review(Self.report(fill: 79), fileBacked: true).isEmpty)
        #expect(policy.review(Self.report(fill: 81), fileBacked: true) == [.warn("snapshot s COW is 81% full")])
        #expect(policy.review(Self.report(fill: 84), fileBacked: true).isEmpty)
        #expect(policy.review(Self.report(fill: 86), fileBacked: true) == [.warn("snapshot s COW is 86% full")])
    }

    @Test func extendsByThePercentFromTheThreshold() throws {
        var policy = try AutoextendPolicy(thresholdPercent: 70, growPercent: 20)
        #expect(policy.review(Self.report(fill: 69), fileBacked: true).isEmpty)
        #expect(policy.review(Self.report(fill: 71), fileBacked: true) == [.extend(name: "s", to: 1_261_568)])
        #expect(policy.review(Self.report(fill: 71), fileBacked: false).isEmpty, "block devices cannot grow")
    }

    @Test func invalidationIsReportedOnceLoudly() throws {
        var policy = try AutoextendPolicy(thresholdPercent: 60, growPercent: 20)
        let first = policy.review(Self.report(fill: 100, state: "invalid"), fileBacked: true)
        #expect(first.count == 1)
        if case .alarm(let text) = first[0] { #expect(text.contains("INVALID")) } else { Issue.record("expected an alarm") }
        #expect(policy.review(Self.report(fill: 100, state: "invalid"), fileBacked: true).isEmpty)
    }

    /// Settings adopted while it runs (`pool settings` under a server) change what it extends,
    /// not what it already reported.
    @Test func adoptedSettingsKeepWhatWasReported() throws {
        var policy = AutoextendPolicy()
        #expect(policy.review(Self.report(fill: 81), fileBacked: true) == [.warn("snapshot s COW is 81% full")])
        policy.adopt(try AutoextendSettings(thresholdPercent: 70, growPercent: 100))
        #expect(policy.review(Self.report(fill: 82), fileBacked: true) == [.extend(name: "s", to: 2 << 20)], "no second warning")
        policy.adopt(nil)
        #expect(policy.review(Self.report(fill: 82), fileBacked: true).isEmpty)
    }

    @Test func refusesThresholdsBelowFifty() {
        #expect(throws: ControllerError.self) { try AutoextendPolicy(thresholdPercent: 40, growPercent: 20) }
        #expect(throws: ControllerError.self) { try AutoextendPolicy(thresholdPercent: 70, growPercent: 0) }
    }
}
