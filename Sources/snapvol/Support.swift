import ArgumentParser
import Controller
import Foundation
import Synchronization

/// `--pool DIR`, on every command that uses a pool.
struct PoolOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The pool directory.", valueName: "dir"))
    var pool: String?
    @Option(help: ArgumentHelp("Seconds to wait while another snapvol process holds the pool (0: refuse at once).",
                               valueName: "seconds"))
    var wait: Double = 60

    func validate() throws {
        guard wait >= 0, wait.isFinite else { throw ValidationError("--wait \(wait): give seconds from 0") }
    }

    var location: PoolLocation {
        pool.map { PoolLocation(directory: absolutePath($0)) } ?? PoolLocation.defaultLocation()
    }

    /// Opens the pool (taking its lock), runs `body`, flushes and closes; inside the server
    /// (a forwarded command) uses the server's controller instead. While this process holds
    /// the pool, commands run elsewhere are forwarded to it (see `PoolOwner`).
    func withController<T>(_ purpose: String, as role: PoolOwner = .command, _ body: (Controller) async throws -> T) async throws -> T {
        if let owner = try owner() { return try await body(owner) }
        let controller = try await open(purpose, forwardable: role == .command)
        do {
            let result = role == .server ? try await body(controller) : try await PoolHolding.whileHolding(controller, as: role) { try await body(controller) }
            await controller.close()
            return result
        } catch {
            await controller.close()
            throw error
        }
    }
}

extension PoolOptions {
    /// The controller of the process this command was forwarded to (it holds the pool), or nil
    /// when the command runs in its own process.
    func owner() throws -> Controller? {
        guard let owner = CommandEnvironment.current.controller else { return nil }
        guard owner.location == location else { throw ControllerError.refused("this server owns \(owner.location.directory), not \(location.directory)") }
        return owner
    }

    /// Opens the pool, waiting up to `--wait` seconds while another process holds it (as LVM
    /// waits for a volume group's lock), so that two cron jobs do not fail each other. A holder
    /// that starts answering on the control socket meanwhile (a server, a TUI) gets the command
    /// line, and its exit status ends this process.
    private func open(_ purpose: String, forwardable: Bool) async throws -> Controller {
        let deadline = ContinuousClock.now + .milliseconds(Int64(wait * 1000))
        let waitText = wait == wait.rounded() ? "\(Int(wait)) s" : "\(wait) s"
        var told = false
        while true {
            do {
                return try await Controller.open(location, purpose: purpose)
            } catch ControllerError.locked(let pool, let holder) {
                if forwardable, let status = ControlClient.forward(CommandArguments.current, location: location) {
                    throw ExitCode(status)
                }
                // A second server or TUI does not wait for one: it may hold the pool for days.
                if !forwardable, ControlClient.longLivedHolderAnswers(location) { throw ControllerError.locked(pool: pool, holder: holder) }
                guard ContinuousClock.now < deadline else {
                    guard wait > 0 else { throw ControllerError.locked(pool: pool, holder: holder) }
                    throw ControllerError.refused("pool \(pool) is still in use by \(holder) after waiting \(waitText)")
                }
                if !told, CommandEnvironment.current.interactive {
                    printNotice("waiting for pool \(pool), in use by \(holder) (--wait \(waitText))")
                    told = true
                }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
    }
}

/// What a process holding a pool is, for the commands run elsewhere meanwhile.
enum PoolOwner: String, Sendable {
    /// A command: forwarded, while it waits for the pool, to a holder that starts serving; once
    /// it holds the pool, it answers on the control socket until it ends (others' commands
    /// then run in it, and finish before it exits).
    case command
    /// The TUI: answers on the control socket too, but is never forwarded (it attaches instead).
    case terminal
    /// `serve`, which runs its own control socket (with the metrics endpoint).
    case server

    /// Whether it holds the pool until someone stops it (a TUI attaches to it, a second one
    /// does not wait for it), rather than for one command.
    var holdsForLong: Bool { self != .command }
}

/// Runs a command body, turning any error into one line on stderr and a non-zero exit.
func guarded(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let exit as ExitCode {
        throw exit
    } catch {
        printError("\(error)")
        throw ExitCode(1)
    }
}

func printError(_ message: String) {
    let line = message.split(separator: "\n").joined(separator: " ")
    CommandEnvironment.current.stderr(Data("snapvol: error: \(line)\n".utf8))
}

func printWarning(_ message: String) {
    CommandEnvironment.current.stderr(Data("snapvol: warning: \(message)\n".utf8))
}

func absolutePath(_ path: String) -> String {
    let url = path.hasPrefix("/") ? URL(fileURLWithPath: path)
        : URL(fileURLWithPath: CommandEnvironment.current.workingDirectory).appendingPathComponent(path)
    return url.standardizedFileURL.path
}

/// Parses a size option inside a command's guarded body, so a malformed size is one clear line.
func bytes(_ text: String) throws -> UInt64 { try ByteSize.parse(text) }

func bytes(_ text: String?) throws -> UInt64? { try text.map(ByteSize.parse) }

/// Parses a `--chunk-size`: a power of two from 4 KiB to 1 GiB.
func chunkBytes(_ text: String?) throws -> Int? {
    guard let text else { return nil }
    let value = try ByteSize.parse(text)
    guard value <= UInt64(Int32.max), ChunkSizes.isValid(Int(value)) else { throw ControllerError.badChunkSize(text) }
    return Int(value)
}

/// JSON as status and check print it.
func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    emit(String(decoding: try encoder.encode(value), as: UTF8.self))
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
final class ProgressBar: Sendable {
    private let enabled: Bool
    private let label: String
    private let lastDrawn = Mutex(-1)

    init(label: String, enabled: Bool = CommandEnvironment.current.interactive) {
        self.label = label
        self.enabled = enabled
    }

    func update(done: UInt64, total: UInt64) {
        guard enabled, total > 0 else { return }
        let percent = Int(done * 100 / total)
        let changed = lastDrawn.withLock { last in
            defer { last = percent }
            return last != percent
        }
        guard changed else { return }
        let width = 30
        let filled = width * percent / 100
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        FileHandle.standardError.write(Data("\r\(label) [\(bar)] \(percent)%".utf8))
    }

    func finish() {
        guard enabled, lastDrawn.withLock({ $0 }) >= 0 else { return }
        FileHandle.standardError.write(Data("\n".utf8))
    }
}

/// An age option ("90m", "12h", "7d", "2w", "3600s") in seconds; `option` names it in the error.
func age(_ text: String, option: String) throws -> TimeInterval {
    let units: [Character: TimeInterval] = ["s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800]
    guard let unit = text.last.flatMap({ units[$0] }), let count = Double(text.dropLast()), count >= 0, count.isFinite else {
        throw ControllerError.refused("invalid \(option) '\(text)': a number and a unit, s, m, h, d or w (7d)")
    }
    return count * unit
}
