import Foundation

/// A program running in a real terminal: a detached tmux session on a private server socket,
/// driven with send-keys and read with capture-pane.
public final class TmuxSession: Sendable {
    public let socket: String
    public let name = "t"
    /// The program's pane, named in full: tmux resolves a bare `t` to a window whose name starts
    /// with it (a window running `tmux` for a moment) before the session `t`.
    private var pane: String { "\(name):0.0" }

    /// Starts `command` (run by sh) in a `width` x `height` terminal.
    public init(width: Int = 120, height: Int = 40, command: String, environment: [String: String] = [:]) throws {
        socket = "snapvol-test-\(UUID().uuidString.prefix(8))"
        let exports = environment.map { "export \($0.key)='\($0.value)'; " }.joined()
        try Shell.runDetached(["tmux", "-L", socket, "-f", "/dev/null", "new-session", "-d", "-s", name,
                               "-x", "\(width)", "-y", "\(height)", "\(exports)\(command); echo SESSION-ENDED; sleep 60"])
        try reapWhenTheTestProcessEnds()
    }

    /// A second, hidden window that kills the server once this test process is gone, so a test
    /// process killed before `deinit` (a CI timeout, a crash) leaves no tmux server and no TUI
    /// behind.
    private func reapWhenTheTestProcessEnds() throws {
        let watcher = "while kill -0 \(getpid()) 2>/dev/null; do sleep 1; done; tmux -L \(socket) kill-server"
        try tmux(["new-window", "-d", "-n", "reaper", "-t", "\(name):", watcher])
    }

    deinit { try? Shell.runDetached(["tmux", "-L", socket, "kill-server"]) }

    @discardableResult
    func tmux(_ arguments: [String]) throws -> Shell.Result {
        try Shell.check(["tmux", "-L", socket, "-f", "/dev/null"] + arguments)
    }

    /// Sends tmux key names (`Enter`, `Escape`, `Down`, `F2`, `q`).
    public func keys(_ keys: String...) throws { try tmux(["send-keys", "-t", pane] + keys) }

    /// Sends `keys`, then waits for `text` on the screen.
    @discardableResult
    public func press(_ keys: String..., until text: String) throws -> String {
        try tmux(["send-keys", "-t", pane] + keys)
        return try waitFor(text: text)
    }

    /// Types `text` literally.
    public func type(_ text: String) throws { try tmux(["send-keys", "-t", pane, "-l", text]) }

    public func screen() throws -> String { try tmux(["capture-pane", "-p", "-t", pane]).text }

    public func resize(width: Int, height: Int) throws {
        try tmux(["resize-window", "-t", "\(name):0", "-x", "\(width)", "-y", "\(height)"])
    }

    /// Whether the pane is in the alternate screen (curses running).
    public func alternateScreen() throws -> Bool {
        try tmux(["display-message", "-p", "-t", pane, "#{alternate_on}"]).text.hasPrefix("1")
    }

    /// How long a wait lasts unless told otherwise. Generous on purpose: in the full suite on 2
    /// cores, a TUI's first screen once took more than 15 s to appear (the screen still blank),
    /// while alone it takes about 1 s; a wait ends as soon as its condition holds, so only a
    /// failing test pays for the margin.
    public static let defaultTimeout: Double = 60

    /// Waits until the screen satisfies `condition`; returns the last screen seen.
    @discardableResult
    public func waitFor(_ what: String, timeout: Double = defaultTimeout, _ condition: (String) -> Bool) throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        var last = ""
        while Date() < deadline {
            last = try screen()
            if condition(last) { return last }
            Thread.sleep(forTimeInterval: 0.1)
        }
        throw TmuxTimeout(what: what, screen: last)
    }

    @discardableResult
    public func waitFor(text: String, timeout: Double = defaultTimeout) throws -> String {
        try waitFor("'\(text)' on screen", timeout: timeout) { $0.contains(text) }
    }
}

/// A wait for text on the screen that timed out; carries the screen as it was.
public struct TmuxTimeout: Error, CustomStringConvertible {
    public let what: String
    public let screen: String
    public var description: String { "timed out waiting for \(what); screen was:\n\(screen)" }
}
