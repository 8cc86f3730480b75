import CNcursesw
import Foundation

/// The real terminal, through ncursesw. One instance at a time; `close()` restores the terminal.
///
/// Invariants: colours come from the theme, mapped down to 8 colours or to attributes only
/// (monochrome, `NO_COLOR`); box and block characters are used only with a UTF-8 locale.
public final class CursesScreen: Screen {
    public private(set) var rows = 0
    public private(set) var columns = 0
    public let unicode: Bool
    private let window: UnsafeMutablePointer<WINDOW>
    private var attributes: [Element: attr_t] = [:]

    /// Errors that keep the UI from starting, each one line.
    public enum StartError: Error, CustomStringConvertible {
        case notATerminal
        case unknownTerminal(String)

        public var description: String {
            switch self {
            case .notATerminal: return "standard output is not a terminal: use 'snapvol status' (or --json) instead"
            case .unknownTerminal(let term): return "terminal type '\(term)' is unknown to terminfo: set TERM (e.g. xterm-256color)"
            }
        }
    }

    public init(theme: Theme, colour: Bool) throws {
        guard isatty(STDOUT_FILENO) == 1, isatty(STDIN_FILENO) == 1 else { throw StartError.notATerminal }
        setlocale(LC_ALL, "")
        unicode = String(cString: snapvol_codeset()).uppercased().replacingOccurrences(of: "-", with: "") == "UTF8"
        guard snapvol_terminal_usable() == 1 else {
            throw StartError.unknownTerminal(ProcessInfo.processInfo.environment["TERM"] ?? "(unset)")
        }
        guard let screen = initscr() else { throw StartError.notATerminal }
        window = screen
        raw()
        noecho()
        keypad(window, true)
        set_escdelay(25)
        _ = curs_set(0)
        wtimeout(window, 100)
        if colour && has_colors() {
            start_color()
            use_default_colors()
        }
        setUpStyles(theme, colour: colour && has_colors())
        measure()
    }

    private func setUpStyles(_ theme: Theme, colour: Bool) {
        let palette = Int(snapvol_colors())
        for (index, element) in Element.allCases.enumerated() {
            let style = theme.style(element)
            var attribute: attr_t = 0
            if style.bold { attribute |= snapvol_a_bold() }
            if style.reverse { attribute |= snapvol_a_reverse() }
            if style.dim { attribute |= snapvol_a_dim() }
            if style.underline { attribute |= snapvol_a_underline() }
            if colour {
                let fg = Self.fit(style.foreground, palette), bg = Self.fit(style.background, palette)
                init_pair(Int16(index + 1), Int16(fg), Int16(bg))
                attribute |= snapvol_color_pair(Int32(index + 1))
            } else if [.title, .header, .selected, .keyText].contains(element) {
                attribute |= snapvol_a_reverse()
            }
            attributes[element] = attribute
        }
    }

    /// Maps a 256-colour index onto what the terminal has.
    static func fit(_ colour: Int, _ palette: Int) -> Int {
        if colour < 0 || colour < palette { return colour }
        return colour % 8
    }

    public func measure() {
        rows = Int(getmaxy(window))
        columns = Int(getmaxx(window))
    }

    public func clear() {
        measure()
        werase(window)
    }

    public func put(_ row: Int, _ column: Int, _ text: String, _ element: Element) {
        guard row >= 0, row < rows, column < columns, !text.isEmpty else { return }
        let start = max(column, 0)
        let visible = String(text.dropFirst(start - column).prefix(columns - start))
        let attribute = attributes[element] ?? 0
        wattr_on(window, attribute, nil)
        _ = mvwaddstr(window, Int32(row), Int32(start), visible)
        wattr_off(window, attribute, nil)
    }

    public func present() { wrefresh(window) }

    /// The next key, or nil after the input timeout.
    public func nextKey() -> Int32? {
        let key = wgetch(window)
        return key == ERR ? nil : key
    }

    public func setTimeout(milliseconds: Int32) { wtimeout(window, milliseconds) }

    public func close() { endwin() }
}
