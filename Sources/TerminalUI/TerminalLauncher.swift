import Foundation

/// Options common to `snapvol tui`, `monitor` and `demo`.
public struct TerminalOptions: Sendable {
    public var delay: Double
    public var themeName: String?

    public init(delay: Double = 1, themeName: String? = nil) {
        self.delay = delay
        self.themeName = themeName
    }
}

/// Starts the UI on its own thread (curses input blocks for up to 100 ms at a time, which must
/// not hold one of the few threads that run the engine's tasks) and waits for it to end.
public enum TerminalLauncher {
    public static func run(source: any PoolSource, options: TerminalOptions) async throws {
        let config = TerminalConfig.load()
        let themeName = options.themeName ?? config.theme ?? "default"
        let theme = try Theme.load(named: themeName)
        let colour = ProcessInfo.processInfo.environment["NO_COLOR"].map(\.isEmpty) ?? true
        let screen = try CursesScreen(theme: theme, colour: colour && themeName != "monochrome")
        let app = MonitorApp(source: source, screen: screen, delay: options.delay)
        let box = AppBox(app)
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let thread = Thread {
                box.app.run()
                continuation.resume()
            }
            thread.name = "snapvol-tui"
            thread.start()
        }
    }
}

/// Hands the app to the UI thread.
// @unchecked Sendable: the app is created here and from then on touched only by the UI thread.
private final class AppBox: @unchecked Sendable {
    let app: MonitorApp
    init(_ app: MonitorApp) { self.app = app }
}

/// `~/.config/snapvol/tui.conf` (or `$XDG_CONFIG_HOME/snapvol/tui.conf`): `theme = NAME`.
/// Read, never written.
public struct TerminalConfig: Sendable {
    public var theme: String?

    public static func load() -> TerminalConfig {
        let environment = ProcessInfo.processInfo.environment
        let base = environment["XDG_CONFIG_HOME"] ?? "\(environment["HOME"] ?? "/root")/.config"
        guard let text = try? String(contentsOfFile: "\(base)/snapvol/tui.conf", encoding: .utf8) else { return TerminalConfig() }
        var config = TerminalConfig()
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if parts.count == 2 && parts[0] == "theme" { config.theme = parts[1] }
        }
        return config
    }
}
