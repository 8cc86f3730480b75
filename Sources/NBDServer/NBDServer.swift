import NIOCore
import NIOPosix
import Synchronization

/// Where the server listens.
public enum NBDListenAddress: Sendable, CustomStringConvertible {
    case unix(path: String)
    case tcp(host: String, port: Int)

    public var description: String {
        switch self {
        case .unix(let path): return "unix socket \(path)"
        case let .tcp(host, port): return "\(host):\(port)"
        }
    }

    /// The URI a client uses for export `name` (as qemu and libnbd write it; `nbds` with TLS).
    public func uri(for name: String, tls: Bool = false) -> String {
        let scheme = tls ? "nbds" : "nbd"
        switch self {
        case .unix(let path): return "\(scheme)+unix:///\(name)?socket=\(path)"
        case let .tcp(host, port): return "\(scheme)://\(host):\(port)/\(name)"
        }
    }
}

/// The NBD server: accepts clients, one session each, and shuts down gracefully (stops
/// accepting, lets sessions finish their in-flight requests, closes them).
///
/// Invariant: every accepted connection is in `sessions` until its channel closes.
public final class NBDServer: Sendable {
    private let group: MultiThreadedEventLoopGroup
    private let listener: NBDListener
    private let sessions: SessionRegistry
    private let busyPolls: [NBDBusyPoll]
    public let address: NBDListenAddress

    private init(group: MultiThreadedEventLoopGroup, listener: NBDListener, sessions: SessionRegistry, busyPolls: [NBDBusyPoll],
                 address: NBDListenAddress) {
        self.group = group
        self.listener = listener
        self.sessions = sessions
        self.busyPolls = busyPolls
        self.address = address
    }

    /// Busy polling so far, over every event loop.
    public var busyPollFigures: NBDBusyPollFigures {
        busyPolls.reduce(into: NBDBusyPollFigures()) { total, poll in
            total.polls += poll.figures.polls
            total.caught += poll.figures.caught
        }
    }

    /// - Parameters:
    ///   - tls: require TLS on every connection, with these credentials.
    ///   - handshakeLimit: disconnect a client that has not reached transmission in this time
    ///     (nil: never), as qemu-nbd's `--handshake-limit`.
    ///   - busyPoll: how long an event loop polls its sessions' sockets before it sleeps
    ///     (`NBDBusyPoll`; nil: never).
    public static func start(exports: any NBDExports, at address: NBDListenAddress, tls: NBDTLS? = nil,
                             handshakeLimit: TimeAmount? = .seconds(10),
                             busyPoll: Duration? = NBDServer.defaultBusyPoll) async throws -> NBDServer {
        let listener = try NBDListener.open(address)
        // One loop per core: each connection's requests run on its loop (`EventLoopTaskExecutor`).
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        let polls = Dictionary(uniqueKeysWithValues: busyPoll.map { limit in
            group.makeIterator().map { (ObjectIdentifier($0), NBDBusyPoll(limit: limit)) }
        } ?? [])
        let registry = SessionRegistry()
        listener.start { descriptor in
            let loop = group.next()
            let socket = NBDSessionSocket(descriptor: descriptor, busyPoll: polls[ObjectIdentifier(loop)])
            _ = ClientBootstrap(group: loop)
                // Socket reads of up to 2 MiB (NIO's default stops at 64 KiB): a 1 MiB write then
                // arrives in a few reads instead of sixteen, each copied into the decoder's buffer.
                .channelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 2048, maximum: 2 << 20))
                .channelInitializer { channel in
                    registry.add(channel)
                    channel.closeFuture.whenComplete { _ in registry.remove(channel) }
                    return channel.eventLoop.makeCompletedFuture {
                        let phase = NBDPhase()
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(NBDDecoder(phase: phase)))
                        try channel.pipeline.syncOperations.addHandler(NBDSessionHandler(phase: phase, exports: exports, tls: tls,
                                                                                           handshakeLimit: handshakeLimit, socket: socket))
                    }
                }
                .withConnectedSocket(descriptor)
        }
        return NBDServer(group: group, listener: listener, sessions: registry, busyPolls: Array(polls.values), address: address)
    }

    /// 50 µs, the usual setting of Linux's `net.core.busy_poll`.
    public static let defaultBusyPoll: Duration? = .microseconds(50)

    /// Stops accepting, lets every session finish its in-flight requests, then closes them.
    public func shutdown() async {
        listener.stop()
        let channels = sessions.all
        for channel in channels { channel.pipeline.fireUserInboundEventTriggered(NBDShutdown()) }
        for channel in channels { try? await channel.closeFuture.get() }
        try? await group.shutdownGracefully()
    }
}

/// The open client connections.
final class SessionRegistry: Sendable {
    private let channels = Mutex<[ObjectIdentifier: any Channel]>([:])

    func add(_ channel: any Channel) { channels.withLock { $0[ObjectIdentifier(channel)] = channel } }
    func remove(_ channel: any Channel) { channels.withLock { _ = $0.removeValue(forKey: ObjectIdentifier(channel)) } }
    var all: [any Channel] { channels.withLock { Array($0.values) } }
}
