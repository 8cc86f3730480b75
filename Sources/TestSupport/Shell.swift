import CSnapvolSys
import Foundation

/// Runs external programs for tests (losetup, gzip, the snapvol binary).
public enum Shell {
    /// A finished program: its exit status and what it printed.
    public struct Result: Sendable {
        public let status: Int32
        public let stdout: Data
        public let stderr: String
        public var text: String { String(decoding: stdout, as: UTF8.self) }
    }

    /// A program that exited non-zero where success was required.
    public struct Failure: Error, CustomStringConvertible {
        public let command: String
        public let result: Result
        public var description: String { "`\(command)` exited \(result.status): \(result.stderr)" }
    }

    /// Runs `arguments[0]` (looked up on PATH) with the rest as arguments.
    @discardableResult
    public static func run(_ arguments: [String], input: Data? = nil, environment: [String: String]? = nil) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        if let environment {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        let out = Pipe(), err = Pipe(), inp = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = inp
        try process.run()
        if let input { inp.fileHandleForWriting.write(input) }
        try inp.fileHandleForWriting.close()
        let (stdoutData, stderrData) = readBoth(out, err)
        process.waitUntilExit()
        return Result(status: process.terminationStatus, stdout: stdoutData, stderr: String(decoding: stderrData, as: UTF8.self))
    }

    /// Runs a command that may leave a daemon behind (tmux starting its server), with
    /// posix_spawn and waitpid: Foundation's Process waits for descriptors the daemon inherits.
    /// Its output goes to /dev/null, and it inherits no other descriptor: a tmux server (and
    /// the `sleep 60` its panes end with) holding the pipes of a concurrent `run` kept that run
    /// from seeing their end for a minute, which made terminal tests wait or time out (session
    /// 12). Throws unless it exits 0.
    public static func runDetached(_ arguments: [String]) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for fd in [Int32(0), 1, 2] {
            posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0)
        }
        _ = snapvol_spawn_close_from(&actions, 3)
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        withDefaultSignals(&attributes)
        var pid: pid_t = 0
        let spawned = posix_spawnp(&pid, arguments[0], &actions, &attributes, &argv, environ)
        guard spawned == 0 else {
            throw Failure(command: arguments.joined(separator: " "), result: Result(status: spawned, stdout: Data(), stderr: "spawn failed"))
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let exitStatus = (status >> 8) & 0xff
        guard status & 0x7f == 0, exitStatus == 0 else {
            throw Failure(command: arguments.joined(separator: " "), result: Result(status: exitStatus, stdout: Data(), stderr: "(output discarded)"))
        }
    }

    /// A child spawned from a test's thread would inherit that thread's signal mask, in which
    /// Dispatch's and the test runner's threads block nearly every signal, and its ignored
    /// SIGPIPE. A tmux server spawned so, and the panes it starts, never saw the SIGHUP and
    /// SIGTERM of `kill-server`: it answered the command and kept running, with its TUI, after
    /// the test ended. So the child starts with no signal blocked and the usual ones at default.
    private static func withDefaultSignals(_ attributes: inout posix_spawnattr_t) {
        var none = sigset_t(), usual = sigset_t()
        sigemptyset(&none)
        sigemptyset(&usual)
        for signal in [SIGHUP, SIGINT, SIGQUIT, SIGPIPE, SIGTERM, SIGCHLD, SIGUSR1, SIGUSR2] { sigaddset(&usual, signal) }
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &usual)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    }

    /// Runs and throws unless the exit status is 0.
    @discardableResult
    public static func check(_ arguments: [String], input: Data? = nil) throws -> Result {
        let result = try run(arguments, input: input)
        guard result.status == 0 else { throw Failure(command: arguments.joined(separator: " "), result: result) }
        return result
    }

    /// Drains both pipes at once, so a child filling one while we wait on the other cannot deadlock.
    private static func readBoth(_ out: Pipe, _ err: Pipe) -> (Data, Data) {
        let outBox = DataBox(), errBox = DataBox()
        let group = DispatchGroup()
        for (pipe, box) in [(out, outBox), (err, errBox)] {
            group.enter()
            DispatchQueue.global().async {
                box.data = pipe.fileHandleForReading.readDataToEndOfFile()
                group.leave()
            }
        }
        group.wait()
        return (outBox.data, errBox.data)
    }
}

// @unchecked Sendable: written once by the reader thread before `group.leave()`, read after `group.wait()`.
private final class DataBox: @unchecked Sendable {
    var data = Data()
}
