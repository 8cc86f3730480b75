import Glibc
import Synchronization
import SystemPackage

/// The service manager's notification socket: systemd's `sd_notify` protocol, one datagram of
/// `KEY=VALUE` lines per message to the Unix socket named by `$NOTIFY_SOCKET` (a path, or an
/// abstract name when it starts with `@`). `serve` says `READY=1` once its sockets accept, keeps
/// `STATUS=` current, sends `WATCHDOG=1` while its controller answers, and `STOPPING=1` when it
/// shuts down, so a unit of `Type=notify` (and `WatchdogSec=`) starts what depends on it only
/// once it serves, and restarts it if it hangs.
///
/// Invariant: without `$NOTIFY_SOCKET` there is no notifier (`fromEnvironment` returns nil);
/// a send that fails is reported once, on standard error, and never stops the server.
final class ServiceNotifier: Sendable {
    /// Where the datagrams go, as a `sockaddr_un` image and its length.
    private let address: [UInt8]
    private let descriptor: FileDescriptor
    private let reportedFailure = Mutex(false)
    /// How often to send `WATCHDOG=1`: half the manager's `$WATCHDOG_USEC`, nil when it asks none.
    let watchdogInterval: Duration?

    /// The notifier `$NOTIFY_SOCKET` asks for, or nil when the process was not started by a
    /// service manager. A `$WATCHDOG_PID` naming another process turns the watchdog off.
    static func fromEnvironment() throws(ServiceNotifierError) -> ServiceNotifier? {
        guard let socket = environment("NOTIFY_SOCKET"), !socket.isEmpty else { return nil }
        var interval: Duration?
        if let text = environment("WATCHDOG_USEC"), let micros = Int64(text), micros > 0,
           environment("WATCHDOG_PID").map({ $0 == String(getpid()) }) ?? true {
            interval = .microseconds(micros / 2)
        }
        return try ServiceNotifier(socket: socket, watchdogInterval: interval)
    }

    init(socket: String, watchdogInterval: Duration?) throws(ServiceNotifierError) {
        address = try Self.socketAddress(socket)
        let made = Glibc.socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard made >= 0 else { throw .system(operation: "socket", socket: socket, errno: Errno(rawValue: errno)) }
        descriptor = FileDescriptor(rawValue: made)
        self.watchdogInterval = watchdogInterval
    }

    deinit { try? descriptor.close() }

    /// Sends one message (lines `KEY=VALUE`); a failure is reported once, then ignored.
    func notify(_ lines: String...) {
        let message = Array(lines.joined(separator: "\n").utf8)
        let sent = address.withUnsafeBytes { address in
            message.withUnsafeBytes { bytes in
                sendto(descriptor.rawValue, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL),
                       address.baseAddress?.assumingMemoryBound(to: sockaddr.self), socklen_t(address.count))
            }
        }
        guard sent < 0 else { return }
        let failure = Errno(rawValue: errno)
        let firstFailure = reportedFailure.withLock { reported -> Bool in
            if reported { return false }
            reported = true
            return true
        }
        if firstFailure {
            printNotice("warning: could not notify the service manager: sendto failed: \(failure) (not reported again)", level: .warning)
        }
    }

    /// The `sockaddr_un` image of `socket`: a path, or an abstract name after `@`.
    static func socketAddress(_ socket: String) throws(ServiceNotifierError) -> [UInt8] {
        var name = Array(socket.utf8)
        if name.first == UInt8(ascii: "@") {
            name[0] = 0
        } else {
            guard name.first == UInt8(ascii: "/") else { throw .invalidAddress(socket) }
            name.append(0)
        }
        let pathOffset = MemoryLayout<sockaddr_un>.offset(of: \.sun_path)!
        guard name.count <= MemoryLayout<sockaddr_un>.size - pathOffset else { throw .invalidAddress(socket) }
        var image = [UInt8](repeating: 0, count: pathOffset + name.count)
        withUnsafeBytes(of: sa_family_t(AF_UNIX)) { image.replaceSubrange(0..<$0.count, with: $0) }
        image.replaceSubrange(pathOffset..., with: name)
        return image
    }

    private static func environment(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }
}

/// Why the notification socket cannot be used; it names the socket.
enum ServiceNotifierError: Error, CustomStringConvertible {
    case invalidAddress(String)
    case system(operation: String, socket: String, errno: Errno)

    var description: String {
        switch self {
        case .invalidAddress(let socket):
            return "NOTIFY_SOCKET '\(socket)': not an absolute path or an abstract name (@...) of at most 107 bytes"
        case let .system(operation, socket, errno):
            return "NOTIFY_SOCKET '\(socket)': \(operation) failed: \(errno)"
        }
    }
}
