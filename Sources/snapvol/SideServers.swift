import Controller
import NBDServer
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

    /// Closes the listening channel (no new connection), then stops the thread, which ends the
    /// connections still open: `beforeStopping` may wait for them first.
    func close(beforeStopping: () async -> Void = {}) async {
        try? await channel.close()
        await beforeStopping()
        try? await group.shutdownGracefully()
    }
}

/// `serve`'s servers besides NBD: the control socket, always, and the metrics endpoint when
/// asked for. The control socket is up before the "serving" notice, so a script that waits for
/// it and then runs `snapvol status` finds its command forwarded, not the pool locked.
struct SideServers: Sendable {
    let control: ControlServer
    let metrics: MetricsServer?
    let metricsHost: String?

    /// Starts them; if one cannot start, stops what did (the NBD server `nbd` too) and throws.
    static func start(_ controller: Controller, metrics address: (host: String, port: Int)?,
                      stoppingOnFailure nbd: NBDServer) async throws -> SideServers {
        let control: ControlServer
        do {
            control = try await ControlServer.start(controller: controller, role: .server)
        } catch {
            await nbd.shutdown()
            throw error
        }
        guard let address else { return SideServers(control: control, metrics: nil, metricsHost: nil) }
        do {
            let metrics = try await MetricsServer.start(host: address.host, port: address.port, controller: controller)
            return SideServers(control: control, metrics: metrics, metricsHost: address.host)
        } catch {
            await control.shutdown(removing: controller.location.controlSocketPath, finishingCommandsWithin: .zero)
            await nbd.shutdown()
            throw error
        }
    }

    /// `http://HOST:PORT/metrics`, with the port the system chose for port 0.
    var metricsURL: String? {
        guard let metrics, let host = metricsHost else { return nil }
        return "http://\(host.contains(":") ? "[\(host)]" : host):\(metrics.port ?? 0)/metrics"
    }

    /// Stops both; forwarded commands get `grace` to finish, cut short by `interrupted`.
    func shutdown(_ controller: Controller, grace: Duration, unless interrupted: AsyncStream<Int32>) async {
        await metrics?.shutdown()
        await control.shutdown(removing: controller.location.controlSocketPath, finishingCommandsWithin: grace, unless: interrupted)
    }
}
