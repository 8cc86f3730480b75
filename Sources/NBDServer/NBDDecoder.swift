import NIOCore

/// Which part of the protocol the connection is in; shared by the decoder and the session
/// handler on the channel's event loop.
final class NBDPhase {
    /// `startingTLS`: STARTTLS was answered and the handshake has not completed; a byte
    /// decoded then was sent in the clear after STARTTLS, and ends the connection.
    enum Value { case clientFlags, options, startingTLS, transmission, closed }
    var value = Value.clientFlags
}

/// Cuts the client's byte stream into `NBDMessage`s. It never trusts a length before checking it
/// against the protocol's limits, so garbage or hostile input ends in `.malformed`, not a crash
/// or an unbounded buffer.
struct NBDDecoder: ByteToMessageDecoder {
    typealias InboundOut = NBDMessage
    let phase: NBDPhase

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        switch phase.value {
        case .closed:
            buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
            return .needMoreData
        case .clientFlags:
            guard let flags = buffer.readInteger(as: UInt32.self) else { return .needMoreData }
            context.fireChannelRead(wrapInboundOut(.clientFlags(flags)))
            return .continue
        case .options:
            return decodeOption(context: context, buffer: &buffer)
        case .startingTLS:
            return buffer.readableBytes == 0 ? .needMoreData : reject("bytes in the clear after STARTTLS", context, &buffer)
        case .transmission:
            return decodeRequest(context: context, buffer: &buffer)
        }
    }

    private func decodeOption(context: ChannelHandlerContext, buffer: inout ByteBuffer) -> DecodingState {
        guard buffer.readableBytes >= 16,
              let magic = buffer.getInteger(at: buffer.readerIndex, as: UInt64.self),
              let code = buffer.getInteger(at: buffer.readerIndex + 8, as: UInt32.self),
              let length = buffer.getInteger(at: buffer.readerIndex + 12, as: UInt32.self) else { return .needMoreData }
        guard magic == NBD.optionMagic else { return reject("bad option magic", context, &buffer) }
        guard length <= NBD.maxOptionLength else { return reject("option of \(length) bytes", context, &buffer) }
        guard buffer.readableBytes >= 16 + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 16)
        let data = buffer.readBytes(length: Int(length)) ?? []
        context.fireChannelRead(wrapInboundOut(.option(code: code, data: data)))
        return .continue
    }

    private func decodeRequest(context: ChannelHandlerContext, buffer: inout ByteBuffer) -> DecodingState {
        guard buffer.readableBytes >= 28,
              let magic = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self),
              let flags = buffer.getInteger(at: buffer.readerIndex + 4, as: UInt16.self),
              let type = buffer.getInteger(at: buffer.readerIndex + 6, as: UInt16.self),
              let handle = buffer.getInteger(at: buffer.readerIndex + 8, as: UInt64.self),
              let offset = buffer.getInteger(at: buffer.readerIndex + 16, as: UInt64.self),
              let length = buffer.getInteger(at: buffer.readerIndex + 24, as: UInt32.self) else { return .needMoreData }
        guard magic == NBD.requestMagic else { return reject("bad request magic", context, &buffer) }
        var request = NBDRequest(flags: flags, type: type, handle: handle, offset: offset, length: length)
        if type == NBD.cmdWrite {
            guard length <= NBD.maxPayload else { return reject("write of \(length) bytes", context, &buffer) }
            guard buffer.readableBytes >= 28 + Int(length) else { return .needMoreData }
            buffer.moveReaderIndex(forwardBy: 28)
            request.payload = buffer.readSlice(length: Int(length)) ?? ByteBuffer()
        } else {
            buffer.moveReaderIndex(forwardBy: 28)
        }
        context.fireChannelRead(wrapInboundOut(.request(request)))
        return .continue
    }

    /// Drops everything buffered and reports the input as not NBD (the session then closes).
    private func reject(_ reason: String, _ context: ChannelHandlerContext, _ buffer: inout ByteBuffer) -> DecodingState {
        buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
        context.fireChannelRead(wrapInboundOut(.malformed(reason)))
        return .needMoreData
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }
}
