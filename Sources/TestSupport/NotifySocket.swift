import Glibc

/// The receiving end of systemd's notification protocol, as a service manager binds it: a Unix
/// datagram socket at a path, or at an abstract name (`@...`). `address` is what
/// `$NOTIFY_SOCKET` must say.
public final class NotifySocket {
    private let fd: Int32
    public let address: String

    /// Binds `address`: a path, or `@name` for the abstract namespace.
    public init(address: String) throws {
        self.address = address
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var name = Array(address.utf8)
        if name.first == UInt8(ascii: "@") { name[0] = 0 }
        var socketAddress = sockaddr_un()
        socketAddress.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &socketAddress.sun_path) { $0.copyBytes(from: name.prefix($0.count - 1)) }
        let length = MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + name.count + (name.first == 0 ? 0 : 1)
        let bound = withUnsafePointer(to: &socketAddress) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(length)) }
        }
        guard fd >= 0, bound == 0 else { throw ServeFailure(log: "bind \(address): errno \(errno)") }
    }

    deinit { close(fd) }

    /// The next message, or nil when none comes within `seconds`.
    public func receive(within seconds: Double) -> String? {
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&descriptor, 1, Int32(seconds * 1000)) == 1 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        return count < 0 ? nil : String(decoding: buffer[0..<count], as: UTF8.self)
    }

    /// Messages until one contains `line` (returned), or nil once `seconds` pass; the messages
    /// passed over go to `skipped`.
    public func receive(containing line: String, within seconds: Double, skipped: inout [String]) -> String? {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .milliseconds(Int64(seconds * 1000)))
        while clock.now < deadline {
            let left = Double((deadline - clock.now).components.seconds) + Double((deadline - clock.now).components.attoseconds) / 1e18
            guard let message = receive(within: max(0.001, left)) else { return nil }
            if message.split(separator: "\n").contains(where: { $0 == line || $0.hasPrefix(line) }) { return message }
            skipped.append(message)
        }
        return nil
    }
}
