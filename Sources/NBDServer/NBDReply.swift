import NIOCore
import VolumeTargets

/// Builds transmission replies: simple ones (a 16-byte header) and, once the client negotiated
/// them, structured ones (a 20-byte chunk header and its payload). Every structured reply here
/// is a single chunk flagged done, but block status with several contexts: one chunk each, the
/// last flagged done.
///
/// Invariant: a reply to a read is structured whenever structured replies were negotiated, as
/// the protocol requires, even when it reports an error.
enum NBDReply {
    /// A simple reply's header; a read's data follows it as a buffer of its own.
    static func simple(_ handle: UInt64, error: UInt32, _ allocator: ByteBufferAllocator) -> ByteBuffer {
        var header = allocator.buffer(capacity: 16)
        header.writeInteger(NBD.simpleReplyMagic)
        header.writeInteger(error)
        header.writeInteger(handle)
        return header
    }

    /// The chunk header and offset of a read's data (`NBD_REPLY_TYPE_OFFSET_DATA`); the data
    /// follows as a buffer of its own.
    static func readData(_ handle: UInt64, offset: UInt64, length: Int, _ allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = chunk(handle, type: NBD.replyTypeOffsetData, payloadLength: 8 + length, allocator, extra: 8)
        buffer.writeInteger(offset)
        return buffer
    }

    /// A chunk with nothing to say but that the reply is done (`NBD_REPLY_TYPE_NONE`): the reply
    /// to a read of no bytes, since a data chunk must carry at least one.
    static func none(_ handle: UInt64, _ allocator: ByteBufferAllocator) -> ByteBuffer {
        chunk(handle, type: NBD.replyTypeNone, payloadLength: 0, allocator, extra: 0)
    }

    /// A structured error (`NBD_REPLY_TYPE_ERROR`), without a message.
    static func error(_ handle: UInt64, _ error: UInt32, _ allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = chunk(handle, type: NBD.replyTypeError, payloadLength: 6, allocator, extra: 6)
        buffer.writeInteger(error)
        buffer.writeInteger(UInt16(0))
        return buffer
    }

    /// One context's extents of `map` (`NBD_REPLY_TYPE_BLOCK_STATUS`), flagged as the context
    /// says; only the first extent if `onlyOne`. `done` on the last chunk of the reply only.
    static func blockStatus(_ handle: UInt64, _ context: NBDMetaContext, _ map: RangeMap, onlyOne: Bool, done: Bool,
                            _ allocator: ByteBufferAllocator) -> ByteBuffer {
        let extents = onlyOne ? Array(map.extents.prefix(1)) : map.extents
        let length = 4 + 8 * extents.count
        var buffer = chunk(handle, type: NBD.replyTypeBlockStatus, payloadLength: length, allocator, extra: length, done: done)
        buffer.writeInteger(context.rawValue)
        for extent in extents {
            buffer.writeInteger(UInt32(extent.length))
            buffer.writeInteger(context.flags(marked: extent.marked))
        }
        return buffer
    }

    /// A chunk header (flagged done unless `done` is false), with room for `extra` bytes of
    /// payload after it.
    private static func chunk(_ handle: UInt64, type: UInt16, payloadLength: Int, _ allocator: ByteBufferAllocator,
                              extra: Int, done: Bool = true) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 20 + extra)
        buffer.writeInteger(NBD.structuredReplyMagic)
        buffer.writeInteger(done ? NBD.replyFlagDone : 0)
        buffer.writeInteger(type)
        buffer.writeInteger(handle)
        buffer.writeInteger(UInt32(payloadLength))
        return buffer
    }
}
