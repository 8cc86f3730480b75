import Foundation

/// `snapvol serve` running in the background for a test; stopped with SIGTERM.
public final class ServeProcess: Sendable {
    private let process: Process
    public let socket: String
    public let log: String

    /// - Parameter journal: tell the server its standard error is the journal (`$JOURNAL_STREAM`
    ///   naming the log file), as systemd does for a service.
    public init(pool: TestPool, extra: [String] = [], environment: [String: String] = [:], journal: Bool = false) throws {
        socket = "\(pool.path)/nbd.sock"
        log = pool.file("serve.log")
        guard FileManager.default.createFile(atPath: log, contents: nil) else { throw ServeFailure(log: "cannot create \(log)") }
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        var environment = environment
        if journal {
            var info = stat()
            guard fstat(output.fileDescriptor, &info) == 0 else { throw ServeFailure(log: "cannot stat \(log)") }
            environment["JOURNAL_STREAM"] = "\(info.st_dev):\(info.st_ino)"
        }
        process = Process()
        process.executableURL = URL(fileURLWithPath: SnapvolBinary.path)
        process.arguments = ["serve", "--pool", pool.path] + extra
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let deadline = Date().addingTimeInterval(20)
        while !((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("serving") {
            guard Date() < deadline, process.isRunning else { throw ServeFailure(log: (try? String(contentsOfFile: log, encoding: .utf8)) ?? "") }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    /// The NBD URI of export `name`.
    public func uri(_ name: String) -> String { "nbd+unix:///\(name)?socket=\(socket)" }

    public var isRunning: Bool { process.isRunning }

    /// Waits until the log holds `text` (returned whole), or throws after `seconds`.
    @discardableResult
    public func waitForLog(containing text: String, within seconds: Double = 10) throws -> String {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            let log = (try? String(contentsOfFile: self.log, encoding: .utf8)) ?? ""
            if log.contains(text) { return log }
            guard Date() < deadline else { throw ServeLogTimeout(text: text, seconds: seconds, log: log) }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    public var processIdentifier: Int32 { process.processIdentifier }

    /// The server's peak resident memory so far (`VmHWM`), in bytes.
    public var peakResidentBytes: Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kilobytes = Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]) else { return nil }
        return kilobytes * 1024
    }

    /// Sends `number` (SIGTERM) without waiting.
    public func signal(_ number: Int32 = SIGTERM) { if process.isRunning { kill(process.processIdentifier, number) } }

    /// Sends SIGTERM and waits; returns the exit status.
    @discardableResult
    public func stop() -> Int32 {
        signal()
        return waitForExit()
    }

    /// Waits for the server to exit (after a `signal`); returns its exit status.
    @discardableResult
    public func waitForExit() -> Int32 {
        process.waitUntilExit()
        return process.terminationStatus
    }

    deinit { if process.isRunning { process.terminate() } }
}

/// A `snapvol serve` that could not be reached: it exited or never said it was serving (the
/// log carries its output), or its socket refused a connection.
public struct ServeFailure: Error, CustomStringConvertible {
    public let log: String
    public var description: String { "snapvol serve did not start: \(log)" }
}

/// A wait for a line in the server's log that timed out; carries the log as it was.
public struct ServeLogTimeout: Error, CustomStringConvertible {
    public let text: String, seconds: Double, log: String
    public var description: String { "no '\(text)' in snapvol serve's log after \(seconds) s; the log was:\n\(log)" }
}

/// A raw Unix-socket client for feeding a server bytes no real client would send.
public final class RawSocket {
    private let fd: Int32

    public init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            path.utf8CString.withUnsafeBytes { raw.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0.prefix(raw.count - 1))) }
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard result == 0 else { throw ServeFailure(log: "connect \(path): errno \(errno)") }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    public func send(_ bytes: [UInt8]) { _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }

    /// Reads exactly `count` bytes, or fewer if the server closes (or 5 s pass).
    public func receive(_ count: Int) -> [UInt8] {
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: count)
        while result.count < count {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, count - result.count, 0) }
            if n <= 0 { break }
            result += buffer[0..<n]
        }
        return result
    }

    /// Whether the server closed the connection (a read returns end of file).
    public func closedByPeer() -> Bool {
        var byte: UInt8 = 0
        return recv(fd, &byte, 1, 0) == 0
    }
}

extension RawSocket {
    /// A session on `export` in the transmission phase: the fixed newstyle handshake, then
    /// NBD_OPT_GO. Returns the socket and the GO replies as read (86 bytes when the export
    /// exists: its INFO, the block sizes' INFO, the ACK).
    public static func transmitting(_ socket: String, export: String) throws -> (RawSocket, [UInt8]) {
        let client = try RawSocket(path: socket)
        _ = client.receive(18)
        client.send(bigEndian(UInt32(3)))
        client.send(NBDWire.go(export))
        return (client, client.receive(86))
    }
}
