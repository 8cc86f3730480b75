/// What the UI draws on: a grid of cells. The curses screen is one implementation; `TextScreen`
/// keeps the grid in memory so tests can read exactly what would be on screen.
public protocol Screen: AnyObject {
    var rows: Int { get }
    var columns: Int { get }
    /// Whether box-drawing and block characters can be shown (a UTF-8 locale).
    var unicode: Bool { get }
    func clear()
    /// Writes `text` at (row, column), clipped at the right edge.
    func put(_ row: Int, _ column: Int, _ text: String, _ element: Element)
    func present()
}

/// An in-memory screen for tests: `lines` is the text on screen.
public final class TextScreen: Screen {
    public let rows: Int
    public let columns: Int
    public let unicode: Bool
    private var grid: [[Character]]
    /// The element drawn last at each cell.
    public private(set) var elements: [[Element?]]

    public init(rows: Int, columns: Int, unicode: Bool = true) {
        self.rows = rows
        self.columns = columns
        self.unicode = unicode
        grid = Array(repeating: Array(repeating: " ", count: columns), count: rows)
        elements = Array(repeating: Array(repeating: nil, count: columns), count: rows)
    }

    public func clear() {
        grid = Array(repeating: Array(repeating: " ", count: columns), count: rows)
        elements = Array(repeating: Array(repeating: nil, count: columns), count: rows)
    }

    public func put(_ row: Int, _ column: Int, _ text: String, _ element: Element) {
        guard row >= 0, row < rows else { return }
        for (offset, character) in text.enumerated() {
            let x = column + offset
            guard x >= 0, x < columns else { continue }
            grid[row][x] = character
            elements[row][x] = element
        }
    }

    public func present() {}

    public var lines: [String] { grid.map { String($0).replacingTrailingSpaces() } }
    public var text: String { lines.joined(separator: "\n") }
}

extension String {
    func replacingTrailingSpaces() -> String {
        var copy = self
        while copy.last == " " { copy.removeLast() }
        return copy
    }
}
