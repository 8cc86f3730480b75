import NIOCore
import NIOPosix

/// A listening channel on an event-loop thread of its own, for `serve`'s side servers (the
/// control socket, the metrics endpoint): they never share the NBD server's loops.
///
/// Invariant: the thread exists only while the channel may accept; a failed bind stops it
/// again, and `close` closes the channel before it stops the thread.
struct SideListener: Sendable {
    let channel: any Channel
    private let group: MultiThreadedEventLoopGroup

    private init(channel: any Channel, group: MultiThreadedEventLoopGroup) {
        self.channel = channel
        self.group = group
    }

    /// Starts a one-thread group, sets up each accepted connection with `connection`, and binds
    /// with `bind`.
    static func start(connection: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>,
                      bind: (ServerBootstrap) -> EventLoopFuture<any Channel>) async throws -> SideListener {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        do {
            let channel = try await bind(ServerBootstrap(group: group).childChannelInitializer(connection)).get()
            return SideListener(channel: channel, group: group)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    func close() async {
        try? await channel.close()
        try? await group.shutdownGracefully()
    }
}
