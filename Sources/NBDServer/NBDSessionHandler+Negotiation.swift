import NIOCore
import NIOSSL
import VolumeTargets

/// Option haggling: STARTTLS, export listing and selection, structured replies, and metadata
/// contexts (`NBDMetaContext`).
extension NBDSessionHandler {
    func handleOption(_ context: ChannelHandlerContext, _ code: UInt32, _ data: [UInt8]) {
        if code == NBD.optStartTLS { return startTLS(context, data) }
        if tls != nil && !tlsActive && code != NBD.optAbort {
            // TLS is required: the old EXPORT_NAME has no error reply, so it ends the session.
            return code == NBD.optExportName ? close(context) : replyOption(context, code, NBD.repErrTLSRequired)
        }
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
                payload.writeString(exports.description(of: name) ?? "")   // the rest of NBD_REP_SERVER
                replyOption(context, code, NBD.repServer, payload)
            }
            replyOption(context, code, NBD.repAck)
        case NBD.optInfo, NBD.optGo:
            handleInfo(context, code, data)
        case NBD.optExportName:
            let name = String(decoding: data, as: UTF8.self)
            guard let export = open(context, name) else { return close(context) }
            var buffer = context.channel.allocator.buffer(capacity: 10 + 124)
            buffer.writeInteger(export.volume.size)
            buffer.writeInteger(transmissionFlags(name))
            if !noZeroes { buffer.writeRepeatingByte(0, count: 124) }
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
            begin(name, export)
        case NBD.optStructuredReply:
            guard data.isEmpty else { return replyOption(context, code, NBD.repErrInvalid) }
            structuredReplies = true
            replyOption(context, code, NBD.repAck)
        case NBD.optListMetaContext, NBD.optSetMetaContext:
            handleMetaContext(context, code, data)
        default:
            replyOption(context, code, NBD.repErrUnsupported)
        }
    }

    /// NBD_OPT_STARTTLS: acknowledged in the clear, then the TLS handler goes in front of the
    /// decoder; until its handshake completes, any byte that arrives (sent in the clear after
    /// STARTTLS) ends the session (`NBDPhase.startingTLS`).
    private func startTLS(_ context: ChannelHandlerContext, _ data: [UInt8]) {
        guard let tls else { return replyOption(context, NBD.optStartTLS, NBD.repErrUnsupported) }
        guard data.isEmpty, !tlsActive else { return replyOption(context, NBD.optStartTLS, NBD.repErrInvalid) }
        replyOption(context, NBD.optStartTLS, NBD.repAck)
        do {
            try context.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls.context), position: .first)
            phase.value = .startingTLS
        } catch {
            close(context)
        }
    }

    /// NBD_OPT_INFO and NBD_OPT_GO: name, then requested info types.
    private func handleInfo(_ context: ChannelHandlerContext, _ code: UInt32, _ data: [UInt8]) {
        var input = ByteBuffer(bytes: data)
        guard let name = readName(&input),
              let count = input.readInteger(as: UInt16.self), input.readableBytes == Int(count) * 2 else {
            return replyOption(context, code, NBD.repErrInvalid)
        }
        let requested = (0..<Int(count)).compactMap { _ in input.readInteger(as: UInt16.self) }
        // GO opens the export before answering, so a volume being removed is refused here.
        let opened = code == NBD.optGo ? open(context, name) : nil
        guard let volume = code == NBD.optGo ? opened?.volume : exports.export(named: name) else {
            return replyOption(context, code, NBD.repErrUnknown)
        }
        var info = ByteBuffer()
        info.writeInteger(NBD.infoExport)
        info.writeInteger(volume.size)
        info.writeInteger(transmissionFlags(name))
        replyOption(context, code, NBD.repInfo, info)
        var sizes = ByteBuffer()
        sizes.writeInteger(NBD.infoBlockSize)
        sizes.writeInteger(UInt32(1))
        sizes.writeInteger(UInt32(4096))
        sizes.writeInteger(UInt32(NBD.maxPayload))
        replyOption(context, code, NBD.repInfo, sizes)
        if requested.contains(NBD.infoName) { replyInfo(context, code, NBD.infoName, name) }
        if requested.contains(NBD.infoDescription), let description = exports.description(of: name) {
            replyInfo(context, code, NBD.infoDescription, description)
        }
        replyOption(context, code, NBD.repAck)
        if let opened { begin(name, opened) }
    }

    /// An `NBD_REP_INFO` carrying text: the export's name or description.
    private func replyInfo(_ context: ChannelHandlerContext, _ code: UInt32, _ type: UInt16, _ text: String) {
        var payload = ByteBuffer()
        payload.writeInteger(type)
        payload.writeString(text)
        replyOption(context, code, NBD.repInfo, payload)
    }

    /// Opens the export for this session; a forced removal of the volume closes the session.
    private func open(_ context: ChannelHandlerContext, _ name: String) -> VolumeLease? {
        let channel = context.channel
        return exports.open(name) { channel.close(promise: nil) }
    }

    /// NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT: an export name, then queries.
    /// A query names a context (`NBDMetaContext`) that applies to the export or, when listing,
    /// its namespace; listing with no query lists them all. Setting needs structured replies
    /// first, and replaces what an earlier set chose.
    private func handleMetaContext(_ context: ChannelHandlerContext, _ code: UInt32, _ data: [UInt8]) {
        let setting = code == NBD.optSetMetaContext
        var input = ByteBuffer(bytes: data)
        guard let name = readName(&input), let queries = readQueries(&input) else {
            return replyOption(context, code, NBD.repErrInvalid)
        }
        if setting && !structuredReplies { return replyOption(context, code, NBD.repErrInvalid) }
        guard let volume = exports.export(named: name) else { return replyOption(context, code, NBD.repErrUnknown) }
        let candidates = NBDMetaContext.allCases.filter { $0.applies(to: volume) }
        let chosen = queries.isEmpty && !setting
            ? candidates
            : candidates.filter { candidate in queries.contains { $0 == candidate.name || (!setting && $0 == candidate.namespace) } }
        if setting {
            metaContextExport = name
            selectedContexts = chosen
        }
        for metaContext in chosen {
            var payload = ByteBuffer()
            payload.writeInteger(setting ? metaContext.rawValue : 0)
            payload.writeString(metaContext.name)
            replyOption(context, code, NBD.repMetaContext, payload)
        }
        replyOption(context, code, NBD.repAck)
    }

    /// A 32-bit length and that many bytes of UTF-8; nil if the input is shorter.
    private func readName(_ input: inout ByteBuffer) -> String? {
        guard let length = input.readInteger(as: UInt32.self), length <= input.readableBytes else { return nil }
        return input.readString(length: Int(length))
    }

    /// A 32-bit count, then that many names, filling the input exactly; nil otherwise.
    private func readQueries(_ input: inout ByteBuffer) -> [String]? {
        guard let count = input.readInteger(as: UInt32.self), count <= input.readableBytes / 4 else { return nil }
        var queries: [String] = []
        for _ in 0..<count {
            guard let query = readName(&input) else { return nil }
            queries.append(query)
        }
        return input.readableBytes == 0 ? queries : nil
    }

    private func begin(_ name: String, _ export: VolumeLease) {
        lease = export
        readOnly = exports.isReadOnly(name)
        activeContexts = structuredReplies && metaContextExport == name ? selectedContexts : []
        phase.value = .transmission
        handshakeTimer?.cancel()
        // Under TLS a request may sit decrypted in the TLS handler with nothing left on the socket.
        if !tlsActive, let socket, let busyPoll = socket.busyPoll {
            busyPoll.add(socket.descriptor)
            busyPolled = true
        }
    }

    private func transmissionFlags(_ name: String) -> UInt16 {
        var flags = NBD.hasFlags | NBD.sendFlush | NBD.sendFUA | NBD.sendTrim | NBD.sendWriteZeroes | NBD.canMultiConn
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
}
