import NIOCore
import VolumeTargets
/// Constants of the NBD protocol (fixed newstyle negotiation, STARTTLS, simple and structured
/// replies, the `base:allocation` metadata context), as in the protocol document of the NBD project.
enum NBD {
    static let initMagic: UInt64 = 0x4E42_444D_4147_4943          // "NBDMAGIC"
    static let optionMagic: UInt64 = 0x4948_4156_454F_5054        // "IHAVEOPT"
    static let optionReplyMagic: UInt64 = 0x0003_E889_0455_65A9
    static let requestMagic: UInt32 = 0x2560_9513
    static let simpleReplyMagic: UInt32 = 0x6744_6698

    // Handshake flags (server) and client flags.
    static let flagFixedNewstyle: UInt16 = 1 << 0
    static let flagNoZeroes: UInt16 = 1 << 1
    static let clientFlagNoZeroes: UInt32 = 1 << 1
    static let knownClientFlags: UInt32 = 0b11

    // Options.
    static let optExportName: UInt32 = 1
    static let optAbort: UInt32 = 2
    static let optList: UInt32 = 3
    static let optStartTLS: UInt32 = 5
    static let optInfo: UInt32 = 6
    static let optGo: UInt32 = 7
    static let optStructuredReply: UInt32 = 8
    static let optListMetaContext: UInt32 = 9
    static let optSetMetaContext: UInt32 = 10

    // Option replies.
    static let repAck: UInt32 = 1
    static let repServer: UInt32 = 2
    static let repInfo: UInt32 = 3
    static let repMetaContext: UInt32 = 4
    static let repErrUnsupported: UInt32 = (1 << 31) + 1
    static let repErrTLSRequired: UInt32 = (1 << 31) + 5
    static let repErrInvalid: UInt32 = (1 << 31) + 3
    static let repErrUnknown: UInt32 = (1 << 31) + 6
    static let repErrTooBig: UInt32 = (1 << 31) + 9

    static let infoExport: UInt16 = 0
    static let infoName: UInt16 = 1
    static let infoDescription: UInt16 = 2
    static let infoBlockSize: UInt16 = 3

    // Transmission flags.
    static let hasFlags: UInt16 = 1 << 0
    static let readOnly: UInt16 = 1 << 1
    static let sendFlush: UInt16 = 1 << 2
    static let sendFUA: UInt16 = 1 << 3
    static let sendTrim: UInt16 = 1 << 5
    static let sendWriteZeroes: UInt16 = 1 << 6
    static let canMultiConn: UInt16 = 1 << 8

    // Commands and command flags.
    static let cmdRead: UInt16 = 0
    static let cmdWrite: UInt16 = 1
    static let cmdDisconnect: UInt16 = 2
    static let cmdFlush: UInt16 = 3
    static let cmdTrim: UInt16 = 4
    static let cmdWriteZeroes: UInt16 = 6
    static let cmdBlockStatus: UInt16 = 7
    static let cmdFlagFUA: UInt16 = 1 << 0
    /// WRITE_ZEROES: write the zeros, do not deallocate.
    static let cmdFlagNoHole: UInt16 = 1 << 1
    /// BLOCK_STATUS: one extent is enough.
    static let cmdFlagReqOne: UInt16 = 1 << 3

    // Structured replies.
    static let structuredReplyMagic: UInt32 = 0x668E_33EF
    static let replyFlagDone: UInt16 = 1 << 0
    static let replyTypeNone: UInt16 = 0
    static let replyTypeOffsetData: UInt16 = 1
    static let replyTypeBlockStatus: UInt16 = 5
    static let replyTypeError: UInt16 = (1 << 15) + 1

    // Block status flags of `base:allocation`.
    static let stateHole: UInt32 = 1 << 0
    static let stateZero: UInt32 = 1 << 1

    // Errors in replies.
    static let errPerm: UInt32 = 1
    static let errIO: UInt32 = 5
    static let errInvalid: UInt32 = 22
    static let errNoSpace: UInt32 = 28
    static let errNotSupported: UInt32 = 95
    static let errShutdown: UInt32 = 108

    /// The largest request payload accepted (qemu and nbdcopy stay below it).
    static let maxPayload = 32 << 20
    /// The largest option payload accepted during negotiation.
    static let maxOptionLength = 64 << 10
}

/// The metadata contexts served, their ids being the raw values: `base:allocation` (where data
/// lies) on every export, `snapvol:exceptions` (the chunks a snapshot holds itself: what changed
/// on its origin since it was taken) on snapshot exports.
enum NBDMetaContext: UInt32, CaseIterable, Sendable {
    case allocation = 1
    case exceptions = 2

    var name: String { self == .allocation ? "base:allocation" : "snapvol:exceptions" }

    /// The namespace, which a listing query may name alone.
    var namespace: String { self == .allocation ? "base:" : "snapvol:" }

    func applies(to volume: any Volume) -> Bool { self == .allocation || volume is Snapshot }

    /// The block status flags of an extent: a hole that reads as zeros, or a chunk held.
    func flags(marked: Bool) -> UInt32 {
        switch self {
        case .allocation: return marked ? 0 : NBD.stateHole | NBD.stateZero
        case .exceptions: return marked ? 1 : 0
        }
    }
}

/// One parsed unit of client input.
enum NBDMessage {
    case clientFlags(UInt32)
    case option(code: UInt32, data: [UInt8])
    case request(NBDRequest)
    /// The input is not NBD: close the connection.
    case malformed(String)
}

/// A transmission-phase request header (and payload for writes).
struct NBDRequest {
    let flags: UInt16
    let type: UInt16
    let handle: UInt64
    let offset: UInt64
    let length: UInt32
    /// A write's data: a slice of the receive buffer (not copied by the decoder).
    var payload = ByteBuffer()
}
