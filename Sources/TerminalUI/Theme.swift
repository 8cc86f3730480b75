import Foundation

/// A screen element that a theme colours.
public enum Element: String, CaseIterable, Sendable {
    case title, header, text, selected, origin, snapshot, dim
    case barLow = "bar_low", barMid = "bar_mid", barHigh = "bar_high", barEmpty = "bar_empty"
    case stateOK = "state_ok", stateWarn = "state_warn", stateBad = "state_bad"
    case keyLabel = "key_label", keyText = "key_text", status, error, border
}

/// A colour and attribute choice for one element.
public struct ElementStyle: Sendable, Equatable {
    /// -1 is the terminal's default colour; 0-255 are palette indexes.
    public var foreground: Int
    public var background: Int
    public var bold = false
    public var reverse = false
    public var dim = false
    public var underline = false
}

/// A theme: one style per element, read from a small text file of `element = fg bg [attrs]`
/// lines (see Themes/default.theme). Elements a file leaves out keep the built-in default.
///
/// Invariant: every `Element` has a style.
public struct Theme: Sendable {
    public let name: String
    public private(set) var styles: [Element: ElementStyle]

    static let colourNames = ["default": -1, "black": 0, "red": 1, "green": 2, "yellow": 3, "blue": 4,
                              "magenta": 5, "cyan": 6, "white": 7]

    /// The built-in theme, used when no theme file can be found.
    public static let builtIn = Theme(name: "built-in", styles: Dictionary(uniqueKeysWithValues: Element.allCases.map { element in
        let style: ElementStyle
        switch element {
        case .title: style = ElementStyle(foreground: 7, background: 4, bold: true)
        case .header: style = ElementStyle(foreground: 0, background: 6)
        case .selected: style = ElementStyle(foreground: 0, background: 6, bold: true)
        case .origin: style = ElementStyle(foreground: -1, background: -1, bold: true)
        case .barLow, .stateOK: style = ElementStyle(foreground: 2, background: -1)
        case .barMid, .stateWarn: style = ElementStyle(foreground: 3, background: -1)
        case .barHigh, .stateBad, .error: style = ElementStyle(foreground: 1, background: -1, bold: true)
        case .keyLabel: style = ElementStyle(foreground: 7, background: -1, bold: true)
        case .keyText: style = ElementStyle(foreground: 0, background: 6)
        case .dim, .barEmpty: style = ElementStyle(foreground: -1, background: -1, dim: true)
        default: style = ElementStyle(foreground: -1, background: -1)
        }
        return (element, style)
    }))

    public init(name: String, styles: [Element: ElementStyle]) {
        self.name = name
        self.styles = styles
    }

    public func style(_ element: Element) -> ElementStyle { styles[element] ?? ElementStyle(foreground: -1, background: -1) }

    /// Parses a theme file's text. Throws a one-line error naming the line at fault.
    public static func parse(name: String, text: String) throws -> Theme {
        var theme = Theme.builtIn
        theme = Theme(name: name, styles: theme.styles)
        for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)[0].trimmingCharacters(in: .whitespaces)
            if line.isEmpty { continue }
            let parts = line.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, let element = Element(rawValue: parts[0]) else {
                throw ThemeError(name: name, line: number + 1, reason: "expected 'element = fg bg [bold|reverse|dim|underline]'")
            }
            let words = parts[1].split(separator: " ").map(String.init)
            guard words.count >= 2, let fg = colour(words[0]), let bg = colour(words[1]) else {
                throw ThemeError(name: name, line: number + 1, reason: "colours are names (default, black, red, ...) or 0-255")
            }
            var style = ElementStyle(foreground: fg, background: bg)
            for attribute in words.dropFirst(2) {
                switch attribute {
                case "bold": style.bold = true
                case "reverse": style.reverse = true
                case "dim": style.dim = true
                case "underline": style.underline = true
                default: throw ThemeError(name: name, line: number + 1, reason: "unknown attribute '\(attribute)'")
                }
            }
            theme.styles[element] = style
        }
        return theme
    }

    static func colour(_ word: String) -> Int? {
        if let named = colourNames[word] { return named }
        guard let index = Int(word), (0...255).contains(index) else { return nil }
        return index
    }

    /// Loads `name` from the first themes directory that has it.
    public static func load(named name: String, directories: [String] = ThemeLocator.directories()) throws -> Theme {
        for directory in directories {
            let path = "\(directory)/\(name).theme"
            if let text = try? String(contentsOfFile: path, encoding: .utf8) { return try parse(name: name, text: text) }
        }
        if name == "default" { return builtIn }
        throw ThemeError(name: name, line: 0, reason: "no theme file \(name).theme in \(directories.joined(separator: ", "))")
    }
}

/// Why a theme file was refused: the theme, the line at fault (0: the file as a whole), and why.
public struct ThemeError: Error, CustomStringConvertible {
    public let name: String
    public let line: Int
    public let reason: String
    public var description: String { line > 0 ? "theme \(name), line \(line): \(reason)" : "theme \(name): \(reason)" }
}

/// Where theme files are looked for: `$SNAPVOL_THEMES`, `~/.config/snapvol/themes`,
/// `/usr/local/share/snapvol/themes`, `/usr/share/snapvol/themes`, then `Themes/` of the source
/// checkout the binary was built in.
public enum ThemeLocator {
    public static func directories() -> [String] {
        var result: [String] = []
        let environment = ProcessInfo.processInfo.environment
        if let explicit = environment["SNAPVOL_THEMES"] { result.append(explicit) }
        if let home = environment["HOME"] { result.append("\(home)/.config/snapvol/themes") }
        result += ["/usr/local/share/snapvol/themes", "/usr/share/snapvol/themes"]
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<5 {
            result.append(directory.appendingPathComponent("Themes").path)
            directory.deleteLastPathComponent()
        }
        return result
    }
}
