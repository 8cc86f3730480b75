import CSnapvolSys
import Foundation
import Synchronization
import SystemPackage

/// Why the server could not listen: the call that failed, on which address, and the errno.
public struct NBDListenError: Error, Equatable, CustomStringConvertible {
    public let operation: String
    public let address: String
    public let errno: Errno

    public var description: String { "cannot listen on \(address): \(operation) failed: \(errno)" }
}

/// The server's listening socket and the thread that accepts on it. snapvol accepts its
/// connections itself, rather than through a SwiftNIO server channel, so that it knows each
/// connection's descriptor: an event loop polls its connections' descriptors before it sleeps
/// (`NBDBusyPoll`). Each accepted socket is then handed to SwiftNIO as a connected socket.
///
/// Invariant: once `stop` returns, nothing more is accepted and the descriptor is closed.
final class NBDListener: Sendable {
    private let descriptor: Int32
    /// A Unix socket's path and inode, removed at `stop` if the path still names that socket.
    private let socketFile: (path: String, inode: ino_t)?
    private let stopping = Atomic(false)
    private let started = Atomic(false)
    private let finished = DispatchSemaphore(value: 0)

    private init(descriptor: Int32, socketFile: (path: String, inode: ino_t)? = nil) {
        self.descriptor = descriptor
        self.socketFile = socketFile
    }

    /// A socket bound to `address` and listening (a Unix socket is made mode 0600 before it
    /// listens; a socket file left by an earlier server is replaced, any other file refused).
    static func open(_ address: NBDListenAddress, backlog: Int32 = 64) throws(NBDListenError) -> NBDListener {
        switch address {
        case .unix(let path): return try openUnix(path, backlog: backlog)
        case let .tcp(host, port): return try openTCP(host: host, port: port, backlog: backlog)
        }
    }

    /// Accepts connections on a thread of its own until `stop`, handing each descriptor to
    /// `accepted`, which owns it from then on.
    func start(_ accepted: @escaping @Sendable (Int32) -> Void) {
        guard !started.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let thread = Thread { [self] in
            acceptLoop(accepted)
            finished.signal()
        }
        thread.name = "snapvol-nbd-accept"
        thread.start()
    }

    /// Stops accepting (waking the accepting thread) and closes the socket.
    func stop() {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        _ = Glibc.shutdown(descriptor, Int32(SHUT_RDWR))
        if started.load(ordering: .acquiring) { finished.wait() }
        _ = Glibc.close(descriptor)
        if let socketFile, Self.inode(of: socketFile.path) == socketFile.inode { unlink(socketFile.path) }
    }

    private static func inode(of path: String) -> ino_t? {
        var status = stat()
        return lstat(path, &status) == 0 && status.st_mode & S_IFMT == S_IFSOCK ? status.st_ino : nil
    }

    private func acceptLoop(_ accepted: @Sendable (Int32) -> Void) {
        while !stopping.load(ordering: .acquiring) {
            let connection = snapvol_accept(descriptor)
            if connection >= 0 {
                accepted(connection)
                continue
            }
            switch Glibc.errno {
            case EINTR, ECONNABORTED, EPROTO: continue
            case EMFILE, ENFILE, ENOBUFS, ENOMEM: usleep(10_000)   // out of descriptors: let some close
            default: if stopping.load(ordering: .acquiring) { return } else { usleep(10_000) }
            }
        }
    }

    private static func openUnix(_ path: String, backlog: Int32) throws(NBDListenError) -> NBDListener {
        let fail = { (operation: String) in NBDListenError(operation: operation, address: path, errno: Errno(rawValue: Glibc.errno)) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw NBDListenError(operation: "bind (path longer than 107 bytes)", address: path, errno: .fileNameTooLong)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        var status = stat()
        if lstat(path, &status) == 0 {   // an earlier server's socket is replaced, anything else refused
            guard status.st_mode & S_IFMT == S_IFSOCK else {
                throw NBDListenError(operation: "bind (the path exists and is not a socket)", address: path, errno: .fileExists)
            }
            unlink(path)
        }
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw fail("socket") }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else { throw closing(descriptor, fail("bind")) }
        // Owner only, before anyone can connect (nothing can until `listen`).
        guard chmod(path, 0o600) == 0 else { throw closing(descriptor, fail("chmod")) }
        guard listen(descriptor, backlog) == 0 else { throw closing(descriptor, fail("listen")) }
        return NBDListener(descriptor: descriptor, socketFile: inode(of: path).map { (path, $0) })
    }

    private static func openTCP(host: String, port: Int, backlog: Int32) throws(NBDListenError) -> NBDListener {
        let name = "\(host):\(port)"
        var hints = addrinfo()
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var found: UnsafeMutablePointer<addrinfo>?
        let lookup = getaddrinfo(host, String(port), &hints, &found)
        guard lookup == 0, let info = found else {
            throw NBDListenError(operation: "getaddrinfo (\(String(cString: gai_strerror(lookup))))", address: name, errno: .invalidArgument)
        }
        defer { freeaddrinfo(info) }
        let fail = { (operation: String) in NBDListenError(operation: operation, address: name, errno: Errno(rawValue: Glibc.errno)) }
        let descriptor = socket(info.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw fail("socket") }
        var one: Int32 = 1
        setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        guard bind(descriptor, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else { throw closing(descriptor, fail("bind")) }
        guard listen(descriptor, backlog) == 0 else { throw closing(descriptor, fail("listen")) }
        return NBDListener(descriptor: descriptor)
    }

    /// Closes a descriptor that failed half-way, keeping the failure to throw.
    private static func closing(_ descriptor: Int32, _ error: NBDListenError) -> NBDListenError {
        _ = Glibc.close(descriptor)
        return error
    }
}
