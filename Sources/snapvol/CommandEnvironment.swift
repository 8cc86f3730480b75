import Controller
import Foundation

/// Where a command's output goes, where relative paths start, and which controller it uses:
/// this process's own (a normal run), or the server's when the command was forwarded over the
/// control socket. A task-local, so a server can run many forwarded commands at once.
struct CommandEnvironment: Sendable {
    var stdout: @Sendable (Data) -> Void
    var stderr: @Sendable (Data) -> Void
    /// Waits until the output written so far has left this process (for a forwarded command,
    /// until the socket took it), so a long output never piles up in memory.
    var drainOutput: @Sendable () async -> Void = {}
    /// The controller of the process that owns the pool, when this command runs inside it.
    var controller: Controller?
    var workingDirectory: String
    /// Whether progress bars may be drawn (stderr is this process's terminal).
    var interactive: Bool

    @TaskLocal static var current = CommandEnvironment(
        stdout: { FileHandle.standardOutput.write($0) },
        stderr: { FileHandle.standardError.write($0) },
        controller: nil,
        workingDirectory: FileManager.default.currentDirectoryPath,
        interactive: isatty(STDERR_FILENO) == 1)
}

/// A line of normal output.
func emit(_ line: String) { CommandEnvironment.current.stdout(Data((line + "\n").utf8)) }
