import NIOCore
import NIOTLS
import VolumeTargets

/// What the server exports: volumes by name.
public protocol NBDExports: Sendable {
    var exportNames: [String] { get }
    /// The volume called `name`, to describe it (`NBD_OPT_INFO`, metadata contexts).
    func export(named name: String) -> (any Volume)?
    /// Opens `name` for a session's transmission phase: nil if it cannot be had. `disconnect`
    /// ends the session (the exports' owner calls it to free the volume by force); the session
    /// releases the lease when it ends.
    func open(_ name: String, disconnect: @escaping @Sendable () -> Void) -> VolumeLease?
    /// Whether `name` is exported read-only.
    func isReadOnly(_ name: String) -> Bool
    /// A line saying what the export is (`NBD_INFO_DESCRIPTION`), if there is one.
    func description(of name: String) -> String?
}

extension NBDExports {
    public func description(of name: String) -> String? { nil }

    /// Exports that track no sessions: the volume, with nothing to release.
    public func open(_ name: String, disconnect: @escaping @Sendable () -> Void) -> VolumeLease? {
        export(named: name).map { VolumeLease(volume: $0, release: {}) }
    }
}

/// A request for the session to finish its in-flight requests and close (server shutdown).
struct NBDShutdown {}

/// One client connection: the handshake (fixed newstyle), option haggling with STARTTLS (in
/// `NBDSessionHandler+Negotiation.swift`) and transmission. Requests run as tasks, many at
/// once; replies go out as they complete (out of order), structured if the client asked.
/// Lives on the channel's event loop; its state is touched only there.
final class NBDSessionHandler: ChannelInboundHandler {
    typealias InboundIn = NBDMessage
    typealias OutboundOut = ByteBuffer

    let phase: NBDPhase
    let exports: any NBDExports
    /// TLS, required on this connection when set (`NBDTLS`); `tlsActive` once its handshake is done.
    let tls: NBDTLS?
    var tlsActive = false
    /// How long a client may take to reach transmission (nil: for ever), and the timer that
    /// closes the session when it runs out (cancelled once transmission begins).
    let handshakeLimit: TimeAmount?
    var handshakeTimer: Scheduled<Void>?
    var noZeroes = false
    /// The export in use (`NBDExports.open`) from transmission on; released when the session ends.
    var lease: VolumeLease?
    var readOnly = false
    /// Whether the client asked for structured replies (`NBD_OPT_STRUCTURED_REPLY`).
    var structuredReplies = false
    /// The export the client last selected metadata contexts for (`NBD_OPT_SET_META_CONTEXT`),
    /// and those contexts.
    var metaContextExport: String?
    var selectedContexts: [NBDMetaContext] = []
    /// The contexts BLOCK_STATUS answers for: those selected for the export in use.
    var activeContexts: [NBDMetaContext] = []
    private var taskExecutor: EventLoopTaskExecutor?
    private var inFlight = 0
    private var closing = false
    /// The connection's socket; `busyPolled` while its loop polls it before sleeping.
    let socket: NBDSessionSocket?
    var busyPolled = false

    init(phase: NBDPhase, exports: any NBDExports, tls: NBDTLS? = nil, handshakeLimit: TimeAmount? = nil,
         socket: NBDSessionSocket? = nil) {
        self.phase = phase
        self.exports = exports
        self.tls = tls
        self.handshakeLimit = handshakeLimit
        self.socket = socket
    }

    func channelActive(context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: 18)
        buffer.writeInteger(NBD.initMagic)
        buffer.writeInteger(NBD.optionMagic)
        buffer.writeInteger(NBD.flagFixedNewstyle | NBD.flagNoZeroes)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        startHandshakeTimer(context)
        context.fireChannelActive()
    }

    /// A client that has not reached transmission within `handshakeLimit` is disconnected, so
    /// idle or stalled handshakes (a TLS one never begun, say) cannot pile up.
    private func startHandshakeTimer(_ context: ChannelHandlerContext) {
        guard let handshakeLimit else { return }
        let phase = NIOLoopBound(phase, eventLoop: context.eventLoop)
        let channel = context.channel
        handshakeTimer = context.eventLoop.scheduleTask(in: handshakeLimit) {
            guard phase.value.value != .transmission, phase.value.value != .closed else { return }
            phase.value.value = .closed
            channel.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        handshakeTimer?.cancel()
        phase.value = .closed
        lease?.release()
        lease = nil
        if busyPolled, let socket { socket.busyPoll?.remove(socket.descriptor) }
        busyPolled = false
        context.fireChannelInactive()
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
        } else if case TLSUserEvent.handshakeCompleted = event, phase.value == .startingTLS {
            tlsActive = true
            phase.value = .options
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { close(context) }

    func close(_ context: ChannelHandlerContext) {
        phase.value = .closed
        context.close(promise: nil)
    }

    // MARK: transmission

    private func handleRequest(_ context: ChannelHandlerContext, _ request: NBDRequest) {
        guard let volume = lease?.volume else { return close(context) }
        if request.type == NBD.cmdDisconnect {
            closing = true
            if inFlight == 0 { close(context) }
            return
        }
        if closing { return replyError(context, request, NBD.errShutdown) }
        if let error = refusal(request, volume) { return replyError(context, request, error) }
        inFlight += 1
        // The common read and write answer at once, with no task (a task costs three
        // allocations and a trip through the loop's queue); the rest run as tasks.
        if let outcome = NBDCommand.performImmediately(request, on: volume, allocator: context.channel.allocator) {
            return finish(context, request, outcome)
        }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let boundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        let allocator = context.channel.allocator
        let contexts = request.type == NBD.cmdBlockStatus ? activeContexts : []
        Task(executorPreference: executor(for: eventLoop)) {
            let outcome = await NBDCommand.perform(request, on: volume, contexts: contexts, allocator: allocator)
            // The task runs on the loop (its executor), so the reply usually goes out at once.
            if eventLoop.inEventLoop {
                handler.value.finish(boundContext.value, request, outcome)
            } else {
                eventLoop.execute { handler.value.finish(boundContext.value, request, outcome) }
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
        case NBD.cmdWrite, NBD.cmdWriteZeroes, NBD.cmdTrim:
            if readOnly { return NBD.errPerm }
            if overflow || end > volume.size { return NBD.errNoSpace }
        case NBD.cmdFlush:
            return nil
        case NBD.cmdBlockStatus:
            if activeContexts.isEmpty || request.length == 0 || overflow || end > volume.size { return NBD.errInvalid }
        default:
            return NBD.errInvalid
        }
        return nil
    }

    private func finish(_ context: ChannelHandlerContext, _ request: NBDRequest, _ outcome: NBDCommand.Outcome) {
        inFlight -= 1
        guard phase.value != .closed else { return }
        let allocator = context.channel.allocator
        switch outcome {
        case .done(let data?) where structuredReplies && data.readableBytes == 0:
            send(context, NBDReply.none(request.handle, allocator))
        case .done(let data?) where structuredReplies:
            send(context, NBDReply.readData(request.handle, offset: request.offset, length: data.readableBytes, allocator), data)
        case .done(let data):
            send(context, NBDReply.simple(request.handle, error: 0, allocator), data)
        case .maps(let maps):
            let onlyOne = request.flags & NBD.cmdFlagReqOne != 0
            for (index, (metaContext, map)) in maps.enumerated() {
                let done = index == maps.count - 1
                let chunk = NBDReply.blockStatus(request.handle, metaContext, map, onlyOne: onlyOne, done: done, allocator)
                if done { send(context, chunk) } else { context.write(wrapOutboundOut(chunk), promise: nil) }
            }
        case .failed(let error):
            replyError(context, request, error)
        }
        if closing && inFlight == 0 { close(context) }
        // The last reply is out: wait here a moment for the client's next request (`NBDBusyPoll`).
        // Not while part of it waits for the socket (a large read): the loop must send that first.
        if inFlight == 0, busyPolled, (try? context.channel.syncOptions?.getOption(.bufferedWritableBytes)) == 0 {
            socket?.busyPoll?.pollBeforeSleeping()
        }
    }

    /// An error reply: structured for the requests whose replies must be (a read, a block
    /// status) once structured replies are on, simple otherwise.
    private func replyError(_ context: ChannelHandlerContext, _ request: NBDRequest, _ error: UInt32) {
        let allocator = context.channel.allocator
        let structured = structuredReplies && (request.type == NBD.cmdRead || request.type == NBD.cmdBlockStatus)
        send(context, structured ? NBDReply.error(request.handle, error, allocator) : NBDReply.simple(request.handle, error: error, allocator))
    }

    /// Sends a reply's header, then its data if any (a separate buffer, written with the header
    /// in one flush, so the data is not copied again).
    private func send(_ context: ChannelHandlerContext, _ header: ByteBuffer, _ data: ByteBuffer? = nil) {
        guard let data else { return context.writeAndFlush(wrapOutboundOut(header), promise: nil) }
        context.write(wrapOutboundOut(header), promise: nil)
        context.writeAndFlush(wrapOutboundOut(data), promise: nil)
    }
}
