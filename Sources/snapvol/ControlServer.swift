import ArgumentParser
import Controller
import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// The control socket of `snapvol serve` (mode 0600, in the pool directory). A client sends one
/// JSON line, `{"argv": [...], "cwd": "..."}`; the server runs that `snapvol` command against its
/// own controller and streams back frames: a kind byte (`o` stdout, `e` stderr, `x` exit), a
/// big-endian 32-bit length, the payload (for `x`, the 32-bit exit status). The argv
/// `["---holder-role"]` asks instead what the holder is (`PoolOwner`'s raw value on stdout).
enum ControlProtocol {
    static let stdout = UInt8(ascii: "o")
    static let stderr = UInt8(ascii: "e")
    static let exit = UInt8(ascii: "x")
    static let maxRequest = 1 << 20
    static let roleQuery = "---holder-role"

    struct Request: Codable {
        var argv: [String]
        var cwd: String
    }

    /// The `x` frame carrying a command's exit status.
    static func exitFrame(_ status: Int32) -> Data {
        frame(exit, Data(withUnsafeBytes(of: UInt32(bitPattern: status).bigEndian) { Array($0) }))
    }

    static func frame(_ kind: UInt8, _ payload: Data) -> Data {
        var data = Data([kind])
        withUnsafeBytes(of: UInt32(payload.count).bigEndian) { data.append(contentsOf: $0) }
        data.append(payload)
        return data
    }
}

/// Commands that run against a pool and so can be forwarded to the server that owns it.
/// `SendableMetatype`: no conformance is actor-isolated, so the entry point's dynamic cast to it
/// does not tie the parsed command to the main actor (its `run` is nonisolated).
protocol ForwardableCommand: SendableMetatype {
    var options: PoolOptions { get }
    /// Whether this command line runs in the holder's process (false: it runs here and asks
    /// the holder for what it needs, as `events --follow` does every second).
    var runsInHolder: Bool { get }
}

extension ForwardableCommand {
    var runsInHolder: Bool { true }
}

/// Accepts control connections and runs their commands.
struct ControlServer: Sendable {
    private let listener: SideListener
    private let running: RunningCommands

    /// Serves `controller`'s pool for a holder that is `role`.
    static func start(controller: Controller, role: PoolOwner) async throws -> ControlServer {
        let path = controller.location.controlSocketPath
        let running = RunningCommands()
        let listener = try await SideListener.start { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(ControlSessionHandler(controller: controller, role: role, running: running))
            }
        } bind: { bootstrap in
            bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true)
        }
        chmod(path, 0o600)
        return ControlServer(listener: listener, running: running)
    }

    /// Stops taking connections and removes the socket. The commands already forwarded may
    /// finish (their clients get their output and exit status) for up to `grace` (nil: for as
    /// long as they take), unless `interrupted` yields first (`serve`'s second SIGTERM); those
    /// still running then are cut off (each command is crash-safe).
    func shutdown(removing path: String, finishingCommandsWithin grace: Duration?, unless interrupted: AsyncStream<Int32>? = nil) async {
        unlink(path)
        await listener.close {
            let commands = { "\(Wording.counted(running.count, "command")) forwarded by other snapvol processes" }
            guard grace != .zero else {
                if running.count > 0 { printNotice("cutting off \(commands())", level: .warning) }
                return running.cutOff()
            }
            guard running.count > 0 else { return }
            printNotice("finishing \(commands())" + (grace.map { " (for up to \($0.components.seconds) s; SIGTERM again cuts them off)" } ?? ""))
            if await !running.drained(within: grace, unless: interrupted) {
                running.cutOff()
                printNotice("cut off \(commands())", level: .warning)
            }
        }
    }

    /// Runs `body` with `controller`'s pool served on its control socket, so that commands run
    /// elsewhere meanwhile (a cron job's `snapshot create`) are forwarded here instead of finding
    /// the pool locked; they finish before this returns. Without the socket (it cannot be
    /// bound), `body` runs all the same.
    static func whileRunning<T>(_ controller: Controller, as role: PoolOwner, _ body: () async throws -> T) async throws -> T {
        let server = try? await start(controller: controller, role: role)
        do {
            let result = try await body()
            await server?.shutdown(removing: controller.location.controlSocketPath, finishingCommandsWithin: nil)
            return result
        } catch {
            await server?.shutdown(removing: controller.location.controlSocketPath, finishingCommandsWithin: nil)
            throw error
        }
    }
}

/// One control connection: read the request line, run it, stream the output, close.
final class ControlSessionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private let controller: Controller
    private let role: PoolOwner
    private let running: RunningCommands
    private var pending = ByteBuffer()
    private var started = false

    init(controller: Controller, role: PoolOwner, running: RunningCommands) {
        self.controller = controller
        self.role = role
        self.running = running
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !started else { return }
        var input = unwrapInboundIn(data)
        pending.writeBuffer(&input)
        guard let newline = pending.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
            if pending.readableBytes > ControlProtocol.maxRequest { context.close(promise: nil) }
            return
        }
        started = true
        let line = pending.readBytes(length: newline - pending.readerIndex) ?? []
        let channel = context.channel
        let running = self.running
        let send: @Sendable (UInt8, Data) -> Void = { kind, payload in
            running.unlessCutOff { channel.writeAndFlush(ByteBuffer(bytes: ControlProtocol.frame(kind, payload)), promise: nil) }
        }
        // Writes complete in order: an empty one completes once everything before it is written.
        let drain: @Sendable () async -> Void = { try? await running.unlessCutOff { channel.writeAndFlush(ByteBuffer()) }?.get() }
        guard let request = try? JSONDecoder().decode(ControlProtocol.Request.self, from: Data(line)) else {
            send(ControlProtocol.stderr, Data("snapvol: error: malformed control request\n".utf8))
            channel.writeAndFlush(ByteBuffer(bytes: ControlProtocol.exitFrame(2)), promise: nil)
            context.close(promise: nil)
            return
        }
        if request.argv == [ControlProtocol.roleQuery] {
            send(ControlProtocol.stdout, Data(role.rawValue.utf8))
            channel.writeAndFlush(ByteBuffer(bytes: ControlProtocol.exitFrame(0)), promise: nil)
            context.close(promise: nil)
            return
        }
        let controller = self.controller
        running.begin()
        Task {
            defer { running.end() }
            let status = await ForwardedCommand.run(request, controller: controller, send: send, drain: drain)
            // Writes complete in order: once the exit frame is written, so is all output. Closing
            // before that dropped what the socket had not taken yet (a forwarded `io read` of
            // more than about 200 KiB to standard output was cut short).
            try? await running.unlessCutOff { channel.writeAndFlush(ByteBuffer(bytes: ControlProtocol.exitFrame(status))) }?.get()
            _ = running.unlessCutOff { channel.close(promise: nil) }
        }
    }
}

/// Runs a forwarded command line inside the server, with its output captured.
enum ForwardedCommand {
    static func run(_ request: ControlProtocol.Request, controller: Controller, send: @escaping @Sendable (UInt8, Data) -> Void,
                    drain: @escaping @Sendable () async -> Void) async -> Int32 {
        let environment = CommandEnvironment(stdout: { send(ControlProtocol.stdout, $0) }, stderr: { send(ControlProtocol.stderr, $0) },
                                             drainOutput: drain, controller: controller, workingDirectory: request.cwd,
                                             interactive: false)
        return await CommandEnvironment.$current.withValue(environment) {
            do {
                var command = try Snapvol.parseAsRoot(request.argv)
                guard command is ForwardableCommand else {
                    printError("'\(request.argv.prefix(2).joined(separator: " "))' cannot run inside the server; the pool is in use by it")
                    return 1
                }
                if var asyncCommand = command as? AsyncParsableCommand { try await asyncCommand.run() } else { try command.run() }
                return 0
            } catch {
                let code = Snapvol.exitCode(for: error)
                if code == .success {
                    emit(Snapvol.fullMessage(for: error))
                    return 0
                }
                if error is ExitCode { return code.rawValue }
                printError(Snapvol.message(for: error) + (code == .validationFailure ? " (see 'snapvol --help')" : ""))
                return code.rawValue
            }
        }
    }
}

/// The client side: sends this process's command line to the server and relays its output.
enum ControlClient {
    /// Forwards `argv` if a server answers on the pool's control socket, relaying its output to
    /// this process's; returns its exit status, or nil when no server is there (run locally then).
    static func forward(_ argv: [String], location: PoolLocation) -> Int32? {
        exchange(argv, location: location) { kind, payload in
            (kind == ControlProtocol.stdout ? FileHandle.standardOutput : FileHandle.standardError).write(payload)
        }
    }

    /// What the process holding the pool is, if one answers on its control socket.
    static func holderRole(_ location: PoolLocation) -> PoolOwner? {
        var output = Data()
        guard exchange([ControlProtocol.roleQuery], location: location, output: { if $0 == ControlProtocol.stdout { output.append($1) } }) == 0
        else { return nil }
        return PoolOwner(rawValue: String(decoding: output, as: UTF8.self))
    }

    /// Whether the pool's holder answers and holds it for long (a server, a TUI): a TUI attaches
    /// to such a holder, and a second one does not wait for it.
    static func longLivedHolderAnswers(_ location: PoolLocation) -> Bool { holderRole(location)?.holdsForLong == true }

    /// The holder's events after `sequence` (all of them for nil), or nil if no holder answers.
    static func events(after sequence: Int?, location: PoolLocation) -> [EventJournal.Entry]? {
        var output = Data()
        let argv = ["events", "--json", "--pool", location.directory] + (sequence.map { ["--after", "\($0)"] } ?? [])
        guard exchange(argv, location: location, output: { if $0 == ControlProtocol.stdout { output.append($1) } }) == 0 else { return nil }
        return try? JSONDecoder().decode([EventJournal.Entry].self, from: output)
    }

    /// Runs `argv` in the server and hands each output frame to `output`; nil if no server answers.
    static func exchange(_ argv: [String], location: PoolLocation, output: (UInt8, Data) -> Void) -> Int32? {
        let path = location.controlSocketPath
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            path.utf8CString.withUnsafeBytes { raw.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0.prefix(raw.count - 1))) }
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else { return nil }
        let request = ControlProtocol.Request(argv: argv, cwd: FileManager.default.currentDirectoryPath)
        guard var line = try? JSONEncoder().encode(request) else { return nil }
        line.append(UInt8(ascii: "\n"))
        guard writeAll(fd, line) else { return nil }
        while let (kind, payload) = readFrame(fd) {
            switch kind {
            case ControlProtocol.stdout, ControlProtocol.stderr: output(kind, payload)
            case ControlProtocol.exit where payload.count == 4:
                return Int32(bitPattern: payload.withUnsafeBytes { UInt32(bigEndian: $0.loadUnaligned(as: UInt32.self)) })
            default: break
            }
        }
        output(ControlProtocol.stderr, Data(("snapvol: error: the pool's holder stopped before this command finished; snapvol commands "
            + "are crash-safe, so see 'snapvol status' for where it got to (an interrupted merge goes on when the pool is next opened)\n").utf8))
        return 1
    }

    private static func writeAll(_ fd: Int32, _ data: Data) -> Bool {
        data.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let n = write(fd, raw.baseAddress! + done, raw.count - done)
                if n <= 0 { return false }
                done += n
            }
            return true
        }
    }

    private static func readExactly(_ fd: Int32, _ count: Int) -> Data? {
        var data = Data(count: count)
        var done = 0
        while done < count {
            let n = data.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, count - done) }
            if n <= 0 { return nil }
            done += n
        }
        return data
    }

    private static func readFrame(_ fd: Int32) -> (UInt8, Data)? {
        guard let header = readExactly(fd, 5) else { return nil }
        let length = header.dropFirst().withUnsafeBytes { UInt32(bigEndian: $0.loadUnaligned(as: UInt32.self)) }
        guard let payload = readExactly(fd, Int(length)) else { return nil }
        return (header[header.startIndex], payload)
    }
}

/// The forwarded commands still running, so that a shutdown lets them finish or cuts them off.
///
/// Invariant: once `cutOff()` returned, no forwarded command schedules another write on its
/// connection, whose event loop is about to stop.
final class RunningCommands: Sendable {
    private struct State {
        var count = 0
        var cut = false
    }

    private let state = Mutex(State())

    var count: Int { state.withLock { $0.count } }

    func begin() { state.withLock { $0.count += 1 } }
    func end() { state.withLock { $0.count -= 1 } }

    /// The result of `write` (which schedules a write on a connection), or nil once cut off.
    func unlessCutOff<T>(_ write: () -> T) -> T? {
        state.withLock { $0.cut ? nil : write() }
    }

    /// The commands still running write nothing more: their clients see the connection close.
    func cutOff() { state.withLock { $0.cut = true } }

    /// Returns once no forwarded command runs (checked every 20 ms: shutdowns are rare), or
    /// when cancelled.
    func drained() async {
        while count > 0, !Task.isCancelled { try? await Task.sleep(for: .milliseconds(20)) }
    }

    /// Whether every forwarded command ended within `limit` (nil: none), before `interrupted`
    /// (if any) yielded.
    func drained(within limit: Duration?, unless interrupted: AsyncStream<Int32>?) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask { await self.drained(); return self.count == 0 }
            if let limit { group.addTask { try? await Task.sleep(for: limit); return false } }
            if let interrupted { group.addTask { for await _ in interrupted { return false }; return false } }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }
}
