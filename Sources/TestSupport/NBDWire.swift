/// NBD messages built by hand, byte for byte as the protocol document lays them out, for tests
/// that talk to the server below any client library (`RawSocket`, an `EmbeddedChannel`).
public enum NBDWire {
    /// A client option: the `IHAVEOPT` magic, the code, the payload's length, the payload.
    public static func option(_ code: UInt32, _ data: [UInt8]) -> [UInt8] {
        bigEndian(UInt64(0x4948_4156_454F_5054)) + bigEndian(code) + bigEndian(UInt32(data.count)) + data
    }

    /// NBD_OPT_GO for `export`, asking for no particular information.
    public static func go(_ export: String) -> [UInt8] {
        option(7, lengthPrefixed(export) + bigEndian(UInt16(0)))
    }

    /// The header of the server's reply to an option; `length` bytes of payload follow it.
    public static func optionReply(_ code: UInt32, type: UInt32, length: Int = 0) -> [UInt8] {
        bigEndian(UInt64(0x0003_E889_0455_65A9)) + bigEndian(code) + bigEndian(type) + bigEndian(UInt32(length))
    }

    /// A transmission request's header; a write's payload follows it.
    public static func request(type: UInt16, flags: UInt16 = 0, handle: UInt64, offset: UInt64, length: UInt32) -> [UInt8] {
        bigEndian(UInt32(0x2560_9513)) + bigEndian(flags) + bigEndian(type) + bigEndian(handle) + bigEndian(offset) + bigEndian(length)
    }

    /// A simple reply's header; a read's data follows it.
    public static func simpleReply(error: UInt32, handle: UInt64) -> [UInt8] {
        bigEndian(UInt32(0x6744_6698)) + bigEndian(error) + bigEndian(handle)
    }
}

/// Big-endian bytes of an integer, for building NBD messages by hand.
public func bigEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    withUnsafeBytes(of: value.bigEndian) { Array($0) }
}

/// A string as NBD sends names and queries: a 32-bit big-endian length, then its UTF-8 bytes.
public func lengthPrefixed(_ text: String) -> [UInt8] {
    bigEndian(UInt32(text.utf8.count)) + Array(text.utf8)
}
