import NIOCore
import NIOEmbedded
import Testing
import TestSupport
@testable import NBDServer

/// The NBD request parser against hostile input, without a socket: valid request streams are
/// cut at random places (and must decode to exactly what was sent), or mutated (bit flips,
/// truncation, random bytes, lengths set to anything) and must never crash or trap.
@Suite(.mayBlock) struct NBDDecoderFuzzTests {
    static let runs = Int(Environment.value("SNAPVOL_FUZZ_RUNS") ?? "") ?? 1500

    struct Sent: Equatable {
        let type: UInt16
        let handle: UInt64
        let offset: UInt64
        let length: UInt32
        let payload: [UInt8]
    }

    @Test func requestParserSurvivesHostileStreams() throws {
        var generator = SeededGenerator.fromEnvironment()
        var decodedIntact = 0, malformed = 0
        for run in 0..<Self.runs {
            let sent = (0..<Int.random(in: 1...6, using: &generator)).map { _ in Self.randomRequest(using: &generator) }
            var bytes = sent.flatMap(Self.encode)
            let intact = Int.random(in: 0..<4, using: &generator) == 0
            if !intact { Self.mutate(&bytes, using: &generator) }
            let (requests, sawMalformed) = try Self.decode(bytes, phase: .transmission, using: &generator)
            if intact {
                #expect(requests == sent, "run \(run): an intact stream cut anywhere must decode as sent; seed \(generator.seed)")
                decodedIntact += 1
            }
            malformed += sawMalformed ? 1 : 0
        }
        #expect(decodedIntact > 0 && malformed > 0, "both kinds of input must occur; seed \(generator.seed)")
    }

    @Test func optionParserSurvivesHostileStreams() throws {
        var generator = SeededGenerator.fromEnvironment()
        for _ in 0..<Self.runs {
            var bytes = [UInt8](repeating: 0, count: Int.random(in: 0...64, using: &generator))
            for i in bytes.indices { bytes[i] = UInt8.random(in: 0...255, using: &generator) }
            if Bool.random(using: &generator) {
                // A plausible option header with a random length.
                bytes = Self.be(UInt64(0x4948_4156_454F_5054)) + Self.be(UInt32.random(in: 0...10, using: &generator))
                    + Self.be(UInt32.random(in: 0...UInt32.max, using: &generator)) + bytes
            }
            _ = try Self.decode(bytes, phase: .options, using: &generator)
        }
    }

    // MARK: helpers

    static func randomRequest(using generator: inout SeededGenerator) -> Sent {
        let type = [NBD.cmdRead, NBD.cmdWrite, NBD.cmdFlush, NBD.cmdWriteZeroes].randomElement(using: &generator)!
        let length = UInt32.random(in: 0...8192, using: &generator)
        let payload = type == NBD.cmdWrite ? (0..<Int(length)).map { _ in UInt8.random(in: 0...255, using: &generator) } : []
        return Sent(type: type, handle: generator.next(), offset: generator.next() >> 20, length: length, payload: payload)
    }

    static func encode(_ request: Sent) -> [UInt8] {
        be(NBD.requestMagic) + be(UInt16(0)) + be(request.type) + be(request.handle) + be(request.offset) + be(request.length) + request.payload
    }

    static func mutate(_ bytes: inout [UInt8], using generator: inout SeededGenerator) {
        for _ in 0..<Int.random(in: 1...4, using: &generator) {
            guard !bytes.isEmpty else { return }
            let at = Int.random(in: 0..<bytes.count, using: &generator)
            switch Int.random(in: 0..<4, using: &generator) {
            case 0: bytes[at] ^= 1 << UInt8.random(in: 0...7, using: &generator)
            case 1: bytes.removeSubrange(at...)
            case 2: bytes.insert(contentsOf: (0..<Int.random(in: 1...40, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }, at: at)
            default:
                // A length field (at a request's offset 24) set to anything: huge, zero, just over the limit.
                let value = [UInt32.max, 0, UInt32(32 << 20) + 1, UInt32.random(in: 0...UInt32.max, using: &generator)].randomElement(using: &generator)!
                let field = be(value)
                for (i, byte) in field.enumerated() where at + i < bytes.count { bytes[at + i] = byte }
            }
        }
    }

    /// Feeds `bytes` in random slices to a decoder in `phase`; returns the requests it emitted
    /// and whether it reported malformed input.
    static func decode(_ bytes: [UInt8], phase: NBDPhase.Value, using generator: inout SeededGenerator) throws -> ([Sent], Bool) {
        let state = NBDPhase()
        state.value = phase
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(NBDDecoder(phase: state)))
        var position = 0
        while position < bytes.count {
            let end = min(bytes.count, position + Int.random(in: 1...4096, using: &generator))
            try channel.writeInbound(ByteBuffer(bytes: bytes[position..<end]))
            position = end
        }
        var requests: [Sent] = []
        var malformed = false
        while let message = try channel.readInbound(as: NBDMessage.self) {
            switch message {
            case .request(let r): requests.append(Sent(type: r.type, handle: r.handle, offset: r.offset, length: r.length, payload: Array(r.payload.readableBytesView)))
            case .malformed: malformed = true
            default: break
            }
        }
        _ = try? channel.finish()
        return (requests, malformed)
    }

    static func be<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.bigEndian) { Array($0) } }
}
