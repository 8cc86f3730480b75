import Foundation
import NIOCore
import NIOEmbedded
import Testing
import TestSupport
@testable import NBDServer

/// Option haggling on a server that requires TLS, without a socket: before STARTTLS every
/// option but ABORT gets exactly one `NBD_REP_ERR_TLS_REQD` (EXPORT_NAME, which has no error
/// reply, ends the session), whatever its payload; a STARTTLS with a payload is invalid; an
/// accepted STARTTLS followed by cleartext bytes ends the session. Seeded (`SNAPVOL_SEED`).
@Suite(.mayBlock, .enabled(if: Environment.canRun(commands: ["openssl"])))
struct NBDTLSNegotiationFuzzTests {
    static let tlsRequired: UInt32 = (1 << 31) + 5

    @Test func nothingButStartTLSGetsThroughBeforeTLS() async throws {
        var generator = SeededGenerator.fromEnvironment()
        let exports = try await NBDNegotiationFuzzTests.Exports()
        let directory = try TemporaryDirectory()
        let credentials = try TLSCredentials(in: directory.path)
        let tls = try NBDTLS(certificate: credentials.serverCertificate, key: credentials.serverKey)
        for _ in 0..<NBDDecoderFuzzTests.runs / 5 {
            let channel = try NBDNegotiationFuzzTests.negotiatingChannel(exports, tls: tls)
            for _ in 0..<Int.random(in: 1...6, using: &generator) {
                let code = [UInt32(3), 6, 7, 8, 9, 10, 0, 4, 11, 99].randomElement(using: &generator)!
                let (payload, _) = NBDNegotiationFuzzTests.payload(for: code, using: &generator)
                try NBDNegotiationFuzzTests.send(code, payload, to: channel)
                let replies = try NBDNegotiationFuzzTests.replies(channel)
                #expect(replies.map(\.code) == [code] && replies.map(\.type) == [Self.tlsRequired],
                        "option \(code) before TLS; seed \(generator.seed)")
            }
            switch Int.random(in: 0..<4, using: &generator) {
            case 0:   // the old EXPORT_NAME: no reply, the session ends
                try NBDNegotiationFuzzTests.send(1, Array("data".utf8), to: channel)
                #expect(try NBDNegotiationFuzzTests.replies(channel).isEmpty, "seed \(generator.seed)")
                #expect(!channel.isActive, "EXPORT_NAME before TLS; seed \(generator.seed)")
            case 1:   // STARTTLS with a payload is invalid, and changes nothing
                try NBDNegotiationFuzzTests.send(5, [UInt8.random(in: 0...255, using: &generator)], to: channel)
                #expect(try NBDNegotiationFuzzTests.replies(channel).map(\.type) == [(1 << 31) + 3], "seed \(generator.seed)")
                try channel.writeInbound(ByteBuffer(bytes: NBDWire.go("data")))
                #expect(try NBDNegotiationFuzzTests.replies(channel).map(\.type) == [Self.tlsRequired], "seed \(generator.seed)")
            default:  // STARTTLS, then bytes in the clear (a GO riding behind it): acknowledged, then the end
                let go = NBDWire.go("data")
                let start = NBDWire.option(5, [])
                let cut = Int.random(in: 1...go.count, using: &generator)
                try channel.writeInbound(ByteBuffer(bytes: start + go.prefix(cut)))
                let replies = try NBDNegotiationFuzzTests.replies(channel)
                #expect(replies.map(\.code) == [5] && replies.map(\.type) == [1], "seed \(generator.seed)")
                #expect(!channel.isActive, "cleartext after STARTTLS; seed \(generator.seed)")
            }
            _ = try? channel.finish()
        }
    }
}
