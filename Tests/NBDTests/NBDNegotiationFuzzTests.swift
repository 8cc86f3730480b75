import BlockDevices
import ExceptionMachinery
import NIOCore
import NIOEmbedded
import Testing
import TestSupport
import VolumeTargets
@testable import NBDServer

/// The session's option haggling against hostile option payloads (export names, info requests,
/// metadata-context queries), without a socket: every option gets exactly its replies, each
/// well framed and echoing the option, and well-formed context requests get the contexts that
/// apply to the export.
@Suite(.mayBlock) struct NBDNegotiationFuzzTests {
    /// An origin `data` and its snapshot `snap`, in memory.
    final class Exports: NBDExports {
        let origin: Origin
        let snapshot: Snapshot
        init() async throws {
            origin = Origin(name: "data", device: MemoryBlockDevice(name: "data", size: 1 << 20))
            let geometry = try ChunkGeometry(chunkBytes: 4096)
            let store = try await PersistentExceptionStore.format(MemoryBlockDevice(name: "cow", size: 2 << 20), geometry: geometry)
            snapshot = try await origin.attach(name: "snap", store: store)
        }
        var exportNames: [String] { ["data", "snap"] }
        func export(named name: String) -> (any Volume)? { name == "data" ? origin : name == "snap" ? snapshot : nil }
        func isReadOnly(_ name: String) -> Bool { false }
    }

    @Test func optionsGetWellFramedRepliesWhateverTheirPayload() async throws {
        var generator = SeededGenerator.fromEnvironment()
        let exports = try await Exports()
        var contextsGranted = 0
        for session in 0..<NBDDecoderFuzzTests.runs / 5 {
            let channel = try Self.negotiatingChannel(exports)
            var structured = false
            if session.isMultiple(of: 2) {   // half the sessions start with structured replies on
                try Self.send(8, [], to: channel)
                #expect(try Self.replies(channel).map(\.type) == [1])
                structured = true
            }
            for _ in 0..<Int.random(in: 1...6, using: &generator) {
                // Not GO, EXPORT_NAME or ABORT: they end the haggling.
                let other = [UInt32(0), 3, 4, 5, 11, 12, 20].randomElement(using: &generator)!
                let code = [UInt32(6), 8, 9, 10, 10, other].randomElement(using: &generator)!
                let (payload, wellFormed) = Self.payload(for: code, using: &generator)
                try Self.send(code, payload, to: channel)
                let replies = try Self.replies(channel)
                #expect(!replies.isEmpty && replies.allSatisfy { $0.code == code }, "option \(code); seed \(generator.seed)")
                if code == 8 && payload.isEmpty { structured = true }
                if code == 10 && wellFormed.map({ $0.export == "snap" && $0.queries.contains("snapvol:exceptions") }) == true && structured {
                    #expect(replies.contains { $0.type == 4 && $0.payload.starts(with: bigEndian(UInt32(2))) }, "seed \(generator.seed)")
                }
                if code == 10 && !structured { #expect(replies.map(\.type) == [(1 << 31) + 3], "seed \(generator.seed)") }
            }
            // Whatever came before, the session still answers a well-formed request rightly.
            let query = lengthPrefixed("snap") + bigEndian(UInt32(1)) + lengthPrefixed("snapvol:exceptions")
            try Self.send(10, query, to: channel)
            let replies = try Self.replies(channel)
            if structured {
                #expect(replies.map(\.type) == [4, 1] && replies[0].payload.starts(with: bigEndian(UInt32(2))), "seed \(generator.seed)")
                contextsGranted += 1
            } else {
                #expect(replies.map(\.type) == [(1 << 31) + 3], "seed \(generator.seed)")
            }
            _ = try? channel.finish()
        }
        #expect(contextsGranted > 0, "seed \(generator.seed)")
    }

    static func send(_ code: UInt32, _ payload: [UInt8], to channel: EmbeddedChannel) throws {
        try channel.writeInbound(ByteBuffer(bytes: NBDWire.option(code, payload)))
    }

    /// A channel past the greeting and the client flags, in option haggling (requiring TLS
    /// with `tls`).
    static func negotiatingChannel(_ exports: Exports, tls: NBDTLS? = nil) throws -> EmbeddedChannel {
        let phase = NBDPhase()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(NBDDecoder(phase: phase)))
        try channel.pipeline.syncOperations.addHandler(NBDSessionHandler(phase: phase, exports: exports, tls: tls))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 10809)).wait()
        _ = try channel.readOutbound(as: ByteBuffer.self)   // the greeting
        try channel.writeInbound(ByteBuffer(bytes: bigEndian(UInt32(3))))
        return channel
    }

    struct Reply {
        let code: UInt32
        let type: UInt32
        let payload: [UInt8]
    }

    /// Every option reply written so far, each checked for its magic and its length.
    static func replies(_ channel: EmbeddedChannel) throws -> [Reply] {
        var replies: [Reply] = []
        while var buffer = try channel.readOutbound(as: ByteBuffer.self) {
            let magic = buffer.readInteger(as: UInt64.self), code = buffer.readInteger(as: UInt32.self)
            let type = buffer.readInteger(as: UInt32.self), length = buffer.readInteger(as: UInt32.self)
            #expect(magic == 0x0003_E889_0455_65A9 && length.map { Int($0) == buffer.readableBytes } == true)
            replies.append(Reply(code: code ?? 0, type: type ?? 0, payload: buffer.readBytes(length: buffer.readableBytes) ?? []))
        }
        return replies
    }

    /// A payload for option `code`: a well-formed one (returned with what it asks for), one
    /// mutated from it, or random bytes.
    static func payload(for code: UInt32, using generator: inout SeededGenerator) -> ([UInt8], (export: String, queries: [String])?) {
        let export = ["data", "snap", "nope", ""].randomElement(using: &generator)!
        let queries = (0..<Int.random(in: 0...3, using: &generator)).map { _ in
            ["base:allocation", "snapvol:exceptions", "base:", "snapvol:", "qemu:dirty-bitmap:x", ""].randomElement(using: &generator)!
        }
        var bytes: [UInt8]
        switch code {
        case 8: bytes = []
        case 9, 10: bytes = lengthPrefixed(export) + bigEndian(UInt32(queries.count)) + queries.flatMap(lengthPrefixed)
        default: bytes = lengthPrefixed(export) + bigEndian(UInt16(0))
        }
        switch Int.random(in: 0..<4, using: &generator) {
        case 0, 1: return (bytes, (export, queries))
        case 2:
            guard !bytes.isEmpty else { return (bytes, nil) }
            bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
            return (Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &generator))), nil)
        default:
            return ((0..<Int.random(in: 0...40, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }, nil)
        }
    }

}
