import Controller
import Glibc
import NIOCore
import NIOHTTP1

/// `serve --metrics-listen`: an HTTP endpoint that answers `GET /metrics` with the pool's
/// Prometheus exposition (`PoolMetrics`), computed from the controller's status at each scrape.
/// Any other path is 404, any other method 405.
///
/// Invariant: the listener runs on its own event-loop thread, never on the NBD server's loops,
/// so a scrape does not delay a client's request; it closes before the controller goes away.
struct MetricsServer: Sendable {
    private let listener: SideListener

    /// Listens on `host:port`; a failure to bind is a one-line refusal naming the address.
    static func start(host: String, port: Int, controller: Controller) async throws -> MetricsServer {
        do {
            let listener = try await SideListener.start { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMapThrowing {
                    try channel.pipeline.syncOperations.addHandler(MetricsHTTPHandler(controller: controller))
                }
            } bind: { bootstrap in
                bootstrap.serverChannelOption(.socketOption(.so_reuseaddr), value: 1).bind(host: host, port: port)
            }
            return MetricsServer(listener: listener)
        } catch {
            let reason = (error as? IOError).map { String(cString: strerror($0.errnoCode)) } ?? "\(error)"
            throw ControllerError.refused("--metrics-listen \(host):\(port): cannot listen: \(reason)")
        }
    }

    /// The port it listens on (the one asked for, or the one the system chose for port 0).
    var port: Int? { listener.channel.localAddress?.port }

    func shutdown() async { await listener.close() }
}

/// One HTTP connection of the metrics endpoint: each request is answered once its end arrives.
private final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let controller: Controller
    private var request: HTTPRequestHead?

    init(controller: Controller) { self.controller = controller }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): request = head
        case .body: break
        case .end:
            guard let head = request else { return }
            request = nil
            respond(context, to: head)
        }
    }

    private func respond(_ context: ChannelHandlerContext, to head: HTTPRequestHead) {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        let (status, contentType, body): (HTTPResponseStatus, String, String)
        if path != "/metrics" {
            (status, contentType, body) = (.notFound, "text/plain; charset=utf-8", "snapvol serves its metrics at /metrics\n")
        } else if head.method != .GET && head.method != .HEAD {
            (status, contentType, body) = (.methodNotAllowed, "text/plain; charset=utf-8", "use GET\n")
        } else {
            do {
                (status, contentType, body) = (.ok, "text/plain; version=0.0.4; charset=utf-8",
                                               PoolMetrics.exposition(of: try controller.status()))
            } catch {
                (status, contentType, body) = (.internalServerError, "text/plain; charset=utf-8", "status failed: \(error)\n")
            }
        }
        var headers = HTTPHeaders([("Content-Type", contentType), ("Content-Length", "\(body.utf8.count)")])
        if status == .methodNotAllowed { headers.add(name: "Allow", value: "GET, HEAD") }
        if !head.isKeepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        if head.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        let channel = context.channel
        if !head.isKeepAlive { done.whenComplete { _ in channel.close(promise: nil) } }
    }
}
