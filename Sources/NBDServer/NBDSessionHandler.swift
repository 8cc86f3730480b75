import NIOCore
import VolumeTargets

/// What the server exports: volumes by name.
public protocol NBDExports: Sendable {
    var exportNames: [String] { get }
    func export(named name: String) -> (any Volume)?
    /// Whether `name` is exported read-only.
    func isReadOnly(_ name: String) -> Bool
}

/// A request for the session to finish its in-flight requests and close (server shutdown).
struct NBDShutdown {}

/// One client connection: the handshake (fixed newstyle), option haggling and transmission.
/// Requests run as tasks, many at once; replies go out as they complete (out of order).
/// Lives on the channel's event loop; its state is touched only there.
final class NBDSessionHandler: ChannelInboundHandler {
    typealias InboundIn = NBDMessage
    typealias OutboundOut = ByteBuffer

    private let phase: NBDPhase
    private let exports: any NBDExports
    private var noZeroes = false
    private var volume: (any Volume)?
    private var taskExecutor: EventLoopTaskExecutor?
    private var readOnly = false
    private var inFlight = 0
    private var closing = false

    init(phase: NBDPhase, exports: any NBDExports) {
        self.phase = phase
        self.exports = exports
    }

    func channelActive(context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: 18)
        buffer.writeInteger(NBD.initMagic)
        buffer.writeInteger(NBD.optionMagic)
        buffer.writeInteger(NBD.flagFixedNewstyle | NBD.flagNoZeroes)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .clientFlags(let flags):
            guard flags & ~NBD.knownClientFlags == 0 else { return close(context) }
            noZeroes = flags & NBD.clientFlagNoZeroes != 0
            phase.value = .options
        case .option(let code, let data):
            handleOption(context, code, data)
        case .request(let request):
            handleRequest(context, request)
        case .malformed:
            close(context)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is NBDShutdown {
            closing = true
            if inFlight == 0 { close(context) }
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { close(context) }

    private func close(_ context: ChannelHandlerContext) {
        phase.value = .closed
        context.close(promise: nil)
    }

    // MARK: negotiation

    private func handleOption(_ context: ChannelHandlerContext, _ code: UInt32, _ data: [UInt8]) {
        switch code {
        case NBD.optAbort:
            replyOption(context, code, NBD.repAck)
            close(context)
        case NBD.optList:
            guard data.isEmpty else { return replyOption(context, code, NBD.repErrInvalid) }
            for name in exports.exportNames {
                var payload = ByteBuffer()
                payload.writeInteger(UInt32(name.utf8.count))
                payload.writeString(name)
                replyOption(context, code, NBD.repServer, payload)
            }
            replyOption(context, code, NBD.repAck)
        case NBD.optInfo, NBD.optGo:
            handleInfo(context, code, data)
        case NBD.optExportName:
            let name = String(decoding: data, as: UTF8.self)
            guard let volume = exports.export(named: name) else { return close(context) }
            var buffer = context.channel.allocator.buffer(capacity: 10 + 124)
            buffer.writeInteger(volume.size)
            buffer.writeInteger(transmissionFlags(name))
            if !noZeroes { buffer.writeRepeatingByte(0, count: 124) }
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
            begin(name, volume)
        default:
            replyOption(context, code, NBD.repErrUnsupported)
        }
    }

    /// NBD_OPT_INFO and NBD_OPT_GO: name, then requested info types.
    private func handleInfo(_ context: ChannelHandlerContext, _ code: UInt32, _ data: [UInt8]) {
        var input = ByteBuffer(bytes: data)
        guard let nameLength = input.readInteger(as: UInt32.self), nameLength <= input.readableBytes,
              let name = input.readString(length: Int(nameLength)),
              let count = input.readInteger(as: UInt16.self), input.readableBytes == Int(count) * 2 else {
            return replyOption(context, code, NBD.repErrInvalid)
        }
        guard let volume = exports.export(named: name) else { return replyOption(context, code, NBD.repErrUnknown) }
        var export = ByteBuffer()
        export.writeInteger(NBD.infoExport)
        export.writeInteger(volume.size)
        export.writeInteger(transmissionFlags(name))
        replyOption(context, code, NBD.repInfo, export)
        var sizes = ByteBuffer()
        sizes.writeInteger(NBD.infoBlockSize)
        sizes.writeInteger(UInt32(1))
        sizes.writeInteger(UInt32(4096))
        sizes.writeInteger(UInt32(NBD.maxPayload))
        replyOption(context, code, NBD.repInfo, sizes)
        replyOption(context, code, NBD.repAck)
        if code == NBD.optGo { begin(name, volume) }
    }

    private func begin(_ name: String, _ volume: any Volume) {
        self.volume = volume
        readOnly = exports.isReadOnly(name)
        phase.value = .transmission
    }

    private func transmissionFlags(_ name: String) -> UInt16 {
        var flags = NBD.hasFlags | NBD.sendFlush | NBD.sendFUA | NBD.sendWriteZeroes | NBD.canMultiConn
        if exports.isReadOnly(name) { flags |= NBD.readOnly }
        return flags
    }

    private func replyOption(_ context: ChannelHandlerContext, _ code: UInt32, _ type: UInt32, _ payload: ByteBuffer = ByteBuffer()) {
        var buffer = context.channel.allocator.buffer(capacity: 20 + payload.readableBytes)
        buffer.writeInteger(NBD.optionReplyMagic)
        buffer.writeInteger(code)
        buffer.writeInteger(type)
        buffer.writeInteger(UInt32(payload.readableBytes))
        buffer.writeImmutableBuffer(payload)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    // MARK: transmission

    private func handleRequest(_ context: ChannelHandlerContext, _ request: NBDRequest) {
        guard let volume else { return close(context) }
        if request.type == NBD.cmdDisconnect {
            closing = true
            if inFlight == 0 { close(context) }
            return
        }
        if closing { return reply(context, request.handle, NBD.errShutdown) }
        if let error = refusal(request, volume) { return reply(context, request.handle, error) }
        inFlight += 1
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let boundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        let allocator = context.channel.allocator
        Task(executorPreference: executor(for: eventLoop)) {
            let outcome = await NBDCommand.perform(request, on: volume, allocator: allocator)
            // The task runs on the loop (its executor), so the reply usually goes out at once.
            if eventLoop.inEventLoop {
                handler.value.finish(boundContext.value, request.handle, outcome)
            } else {
                eventLoop.execute { handler.value.finish(boundContext.value, request.handle, outcome) }
            }
        }
    }

    /// The error a request gets without being attempted, if any.
    /// The task executor on this session's event loop (made once per session).
    private func executor(for loop: any EventLoop) -> EventLoopTaskExecutor {
        if let taskExecutor { return taskExecutor }
        let made = EventLoopTaskExecutor(loop)
        taskExecutor = made
        return made
    }

    private func refusal(_ request: NBDRequest, _ volume: any Volume) -> UInt32? {
        let (end, overflow) = request.offset.addingReportingOverflow(UInt64(request.length))
        switch request.type {
        case NBD.cmdRead:
            if request.length > NBD.maxPayload || overflow || end > volume.size { return NBD.errInvalid }
        case NBD.cmdWrite, NBD.cmdWriteZeroes:
            if readOnly { return NBD.errPerm }
            if overflow || end > volume.size { return NBD.errNoSpace }
        case NBD.cmdFlush:
            return nil
        default:
            return NBD.errInvalid
        }
        return nil
    }

    private func finish(_ context: ChannelHandlerContext, _ handle: UInt64, _ outcome: NBDCommand.Outcome) {
        inFlight -= 1
        guard phase.value != .closed else { return }
        switch outcome {
        case .done(let data): reply(context, handle, 0, data)
        case .failed(let error): reply(context, handle, error)
        }
        if closing && inFlight == 0 { close(context) }
    }

    /// Sends a simple reply: the 16-byte header, then the data (a separate buffer, written
    /// with the header in one flush, so the data is not copied again).
    private func reply(_ context: ChannelHandlerContext, _ handle: UInt64, _ error: UInt32, _ data: ByteBuffer? = nil) {
        var header = context.channel.allocator.buffer(capacity: 16)
        header.writeInteger(NBD.simpleReplyMagic)
        header.writeInteger(error)
        header.writeInteger(handle)
        guard let data else { return context.writeAndFlush(wrapOutboundOut(header), promise: nil) }
        context.write(wrapOutboundOut(header), promise: nil)
        context.writeAndFlush(wrapOutboundOut(data), promise: nil)
    }
}
