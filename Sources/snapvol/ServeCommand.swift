import ArgumentParser
import Controller
import Dispatch
import Foundation
import NBDServer
import NIOCore
import Synchronization
import VolumeTargets

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Own the pool and export every volume over NBD (a Unix socket in the pool by default).",
        discussion: "Clients: qemu (nbd+unix:///NAME?socket=PATH), nbd-client, nbdcopy, nbdinfo, nbdfuse. SIGINT or SIGTERM shuts down cleanly: no new connections, in-flight requests finish, metadata is flushed, the lock is released.")
    @OptionGroup var options: PoolOptions
    @Option(help: "Listen on TCP HOST:PORT instead (HOST may be omitted: loopback).") var listen: String?
    @Option(help: "Unix socket path (default: nbd.sock in the pool directory).") var socket: String?
    @Flag(help: "Export every volume read-only.") var readOnly = false
    @Flag(help: "Export snapshots read-only (origins and remap volumes stay writable): for backups.")
    var readOnlySnapshots = false
    @Option(help: "Grow a file-backed COW when it is this full (percent, 50-99; default: the pool's 'pool settings', else off).")
    var autoextendThreshold: Double?
    @Option(help: "Grow by this percent of the COW's size (default: the pool's, else 20).") var autoextendPercent: Double?
    @Option(help: "The volume a client gets when it asks for the empty export name (as nbd+unix:///?socket=... does).",
            completion: VolumeCompletion.volumes)
    var defaultExport: String?
    @Option(help: "Require TLS (NBD STARTTLS) on every connection, with this PEM certificate chain (needs --tls-key).")
    var tlsCertificate: String?
    @Option(help: "The PEM private key of --tls-certificate.") var tlsKey: String?
    @Option(help: "Also require a client certificate issued by this PEM CA (mutual TLS).") var tlsClientCa: String?
    @Option(help: "Disconnect a client that has not finished its handshake in this many seconds (0: never).")
    var handshakeLimit: Int = 10
    @Option(help: "Microseconds an event loop polls its clients' sockets before sleeping, after a reply (0: never; at most 1000).")
    var busyPoll: Int = 50
    @Option(help: "On SIGINT or SIGTERM, the seconds that commands other snapvol processes forwarded here may run on before they are cut off (0: at once; a second signal cuts them off too).")
    var stopGrace: Int = 30
    @Option(help: "Serve Prometheus metrics over HTTP at /metrics on HOST:PORT (HOST may be omitted: loopback; port 0: any free one, printed).")
    var metricsListen: String?

    func run() async throws {
        try await guarded {
            let signals = ServeSignals()
            let address = try listenAddress()
            let tls = try tlsCredentials()
            guard handshakeLimit >= 0, handshakeLimit <= 86_400 else {
                throw ControllerError.refused("invalid --handshake-limit \(handshakeLimit): seconds from 0 (never) to 86400")
            }
            let limit: TimeAmount? = handshakeLimit == 0 ? nil : .seconds(Int64(handshakeLimit))
            guard stopGrace >= 0, stopGrace <= 86_400 else {
                throw ControllerError.refused("invalid --stop-grace \(stopGrace): seconds from 0 (cut off at once) to 86400")
            }
            guard busyPoll >= 0, busyPoll <= 1000 else {
                throw ControllerError.refused("invalid --busy-poll \(busyPoll): microseconds from 0 (never) to 1000")
            }
            // Flags override the pool's settings, which are read again every second otherwise.
            let policy: AutoextendSettings? = autoextendThreshold == nil && autoextendPercent == nil ? nil
                : try AutoextendSettings(thresholdPercent: autoextendThreshold, growPercent: autoextendPercent ?? AutoextendSettings.defaultGrowPercent)
            let notifier = try ServiceNotifier.fromEnvironment()
            let metricsAddress = try metricsListen.map { try Self.hostAndPort($0, option: "--metrics-listen", lowestPort: 0) }
            try await options.withController("snapvol serve", as: .server) { controller in
                if let defaultExport, !controller.volumeNames.contains(defaultExport) {
                    throw ControllerError.refused("--default-export \(defaultExport): no such volume in the pool")
                }
                let exports = PoolExports(controller: controller, readOnly: readOnly, readOnlySnapshots: readOnlySnapshots,
                                          defaultExport: defaultExport)
                let server = try await NBDServer.start(exports: exports, at: address, tls: tls, handshakeLimit: limit,
                                                       busyPoll: busyPoll == 0 ? nil : .microseconds(busyPoll))
                let side = try await SideServers.start(controller, metrics: metricsAddress, stoppingOnFailure: server)
                let names = exports.exportNames
                let example = names.first.map { ", e.g. \(address.uri(for: $0, tls: tls != nil))" } ?? ""
                if let url = side.metricsURL { printNotice("metrics at \(url)") }
                printNotice("serving \(names.count) volume(s) on \(address)\(tls == nil ? "" : " (TLS required)")" + example)
                await Self.serveUntilSignalled(controller, signals: signals, tls: tls, policy: policy, notifier: notifier)
                printNotice("shutting down: finishing in-flight requests")
                notifier?.notify("STOPPING=1", "STATUS=shutting down: finishing in-flight requests")
                await side.shutdown(controller, grace: .seconds(stopGrace), unless: signals.shutdown)
                await server.shutdown()
                let polling = server.busyPollFigures
                if polling.polls > 0 {
                    printNotice("busy polling caught the next request in \(polling.caught) of \(polling.polls) polls")
                }
            }
        }
    }

    /// Tells the service manager it is ready, then watches the pool (and feeds its watchdog),
    /// reloading on SIGHUP, until SIGINT or SIGTERM.
    static func serveUntilSignalled(_ controller: Controller, signals: ServeSignals, tls: NBDTLS?, policy: AutoextendSettings?,
                                    notifier: ServiceNotifier?) async {
        // After the notice: a unit ordered after this one starts once both sockets accept.
        let ready = (try? controller.status()).map(serviceStatus) ?? "serving"
        notifier?.notify("READY=1", "STATUS=" + ready)
        let watcher = Task { await watch(controller, policy: policy, notifier: notifier, announced: ready) }
        let watchdog = Task {
            guard let notifier, let interval = notifier.watchdogInterval else { return }
            await keepWatchdogFed(notifier, every: interval, controller: controller)
        }
        let reloader = Task {
            for await _ in signals.reload { reload(tls, notifier: notifier) }
        }
        for await _ in signals.shutdown { break }
        watcher.cancel()
        watchdog.cancel()
        reloader.cancel()
    }

    /// SIGHUP: the TLS files are read again (a renewed certificate); a refusal keeps the old ones.
    /// The service manager hears RELOADING=1, then READY=1 (systemd's `Type=notify-reload`).
    static func reload(_ tls: NBDTLS?, notifier: ServiceNotifier?) {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        notifier?.notify("RELOADING=1", "MONOTONIC_USEC=\(Int64(now.tv_sec) * 1_000_000 + Int64(now.tv_nsec) / 1_000)")
        defer { notifier?.notify("READY=1") }
        guard let tls else { return printNotice("SIGHUP: nothing to reload (no TLS)") }
        do {
            try tls.reload()
            printNotice("reloaded the TLS certificate and key (new TLS sessions use them)")
        } catch {
            printNotice("ERROR: TLS reload failed, the old certificate stays: \(error)", level: .error)
        }
    }

    /// Once a second: autoextend, fill warnings, invalidation alarms, and the engine's events; with
    /// a service manager, `STATUS=` whenever its line changes from `announced`.
    static func watch(_ controller: Controller, policy flags: AutoextendSettings?, notifier: ServiceNotifier?, announced: String? = nil) async {
        var autoextender = Autoextender()
        var announced = announced
        var seen = controller.events.recent.last?.sequence ?? -1
        while !Task.isCancelled {
            for event in controller.events.since(seen) {
                printNotice(event.text, level: event.isAlarm ? .error : .notice)
                seen = event.sequence
            }
            let status = try? controller.status()
            if let notifier, let status, case let line = serviceStatus(status), line != announced {
                notifier.notify("STATUS=" + line)
                announced = line
            }
            for report in await autoextender.step(controller, status: status, settings: flags ?? controller.registry.autoextend) {
                switch report {
                case .warning(let text): printNotice("warning: " + text, level: .warning)
                case .alarm(let text): printNotice("ERROR: " + text, level: .error)
                case .extended(let text): printNotice(text)
                case .failed(let text): printNotice("ERROR: " + text, level: .error)
                }
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    /// The TLS credentials, checked before anything else starts; nil without `--tls-certificate`.
    func tlsCredentials() throws -> NBDTLS? {
        guard let tlsCertificate else {
            if tlsKey != nil || tlsClientCa != nil { throw ControllerError.refused("--tls-key and --tls-client-ca need --tls-certificate") }
            return nil
        }
        guard let tlsKey else { throw ControllerError.refused("--tls-certificate needs --tls-key") }
        do {
            return try NBDTLS(certificate: absolutePath(tlsCertificate), key: absolutePath(tlsKey), clientCA: tlsClientCa.map(absolutePath))
        } catch {
            throw ControllerError.refused(error.description)
        }
    }

    func listenAddress() throws -> NBDListenAddress {
        guard let listen else { return .unix(path: socket.map(absolutePath) ?? options.location.nbdSocketPath) }
        let (host, port) = try Self.hostAndPort(listen, option: "--listen")
        return .tcp(host: host, port: port)
    }

    /// `HOST:PORT` or `:PORT` (loopback), `[v6]:PORT` too.
    static func hostAndPort(_ text: String, option: String, lowestPort: Int = 1) throws -> (host: String, port: Int) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (lowestPort...65535).contains(port) else {
            throw ControllerError.refused("invalid \(option) '\(text)': use HOST:PORT or :PORT")
        }
        let host = String(text[..<colon])
        return (host.isEmpty ? "127.0.0.1" : host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")), port)
    }
}

/// The pool's volumes as NBD exports.
struct PoolExports: NBDExports {
    let controller: Controller
    let readOnly: Bool
    let readOnlySnapshots: Bool
    /// Served for the empty export name.
    var defaultExport: String?

    var exportNames: [String] { controller.volumeNames }
    func export(named name: String) -> (any Volume)? { try? controller.volume(named: volumeName(name)) }
    /// Held by the controller's claims, so removing the volume waits for --force.
    func open(_ name: String, disconnect: @escaping @Sendable () -> Void) -> VolumeLease? {
        controller.open(volumeNamed: volumeName(name), disconnect: disconnect)
    }
    private func volumeName(_ name: String) -> String { name.isEmpty ? (defaultExport ?? name) : name }

    /// What `nbdinfo` shows: the volume's kind, what it is on, and its chunk size.
    func description(of name: String) -> String? {
        let registry = controller.registry
        let volume = volumeName(name)
        if let (origin, snapshot) = registry.snapshot(named: volume) {
            return "snapvol snapshot of \(origin.name), COW \(snapshot.cowPath), \(ByteSize.describe(UInt64(snapshot.chunkSize))) chunks"
        }
        if let origin = registry.origin(named: volume) { return "snapvol origin on \(origin.path)" }
        if let remap = registry.remaps.first(where: { $0.name == volume }) {
            return "snapvol remap volume on \(remap.devicePath), spare \(remap.sparePath)"
        }
        return nil
    }
    func isReadOnly(_ name: String) -> Bool {
        readOnly || (readOnlySnapshots && controller.registry.snapshot(named: volumeName(name)) != nil)
    }
}
