import Controller
import Foundation

/// Everything the screen shows besides the model: mode, messages, dialogs.
public struct ViewState: Sendable {
    public var readOnly = false
    public var pool = ""
    public var delay = 1.0
    public var paused = false
    public var message = ""
    public var messageIsError = false
    public var events: [EventJournal.Entry] = []
    public var chunkMap: [Double]?
    public var showHelp = false
    /// A prompt or confirmation shown on the status line.
    public var prompt: String?
    public var form: SnapshotForm?
}

/// Draws a `MonitorModel` and `ViewState` onto a `Screen`. Pure layout: no curses, no I/O.
public enum Renderer {
    public static let minimumRows = 24
    public static let minimumColumns = 80

    /// Column titles and widths for a screen `width` wide: roomy from 110 columns, compact
    /// below, and the I/O rate columns only when they fit.
    static func columns(for width: Int) -> [(title: String, width: Int)] {
        if width >= 110 {
            return [("NAME", 20), ("SIZE", 9), ("CHUNK", 7), ("EXCEPT", 8), ("COW FILL", 19), ("PEND", 5), ("STATE", 13),
                    ("READ", 10), ("WRITE", 10)]
        }
        let compact = [("NAME", 16), ("SIZE", 8), ("CHUNK", 6), ("EXCEPT", 7), ("COW FILL", 16), ("PEND", 4), ("STATE", 12)]
        return width >= 93 ? compact + [("READ", 8), ("WRITE", 8)] : compact
    }

    /// Draws everything; snapshot ages are counted to `now`.
    public static func draw(_ model: MonitorModel, _ view: ViewState, on screen: Screen, now: Date = Date()) {
        screen.clear()
        defer { screen.present() }
        guard screen.rows >= minimumRows, screen.columns >= minimumColumns else {
            screen.put(0, 0, "terminal too small: \(minimumColumns)x\(minimumRows) needed, have \(screen.columns)x\(screen.rows)", .error)
            return
        }
        drawTitle(view, model, screen)
        let detailHeight = 9
        let listHeight = screen.rows - 4 - detailHeight
        drawTable(model, screen, top: 1, height: listHeight)
        drawDetail(model, view, screen, top: 2 + listHeight, height: detailHeight, now: now)
        drawStatusLine(view, screen)
        drawKeyBar(view, screen)
        if view.showHelp { HelpOverlay.draw(readOnly: view.readOnly, on: screen) }
        if let form = view.form { FormRenderer.draw(form, on: screen) }
    }

    static func drawTitle(_ view: ViewState, _ model: MonitorModel, _ screen: Screen) {
        var title = " snapvol  pool \(view.pool)"
        if view.readOnly { title += "  [READ-ONLY]" }
        title += "  refresh \(Format.seconds(view.delay))" + (view.paused ? " (paused)" : "")
        title += "  sort: \(model.sort.rawValue)"
        if !model.filter.isEmpty { title += "  filter: \(model.filter)" }
        screen.put(0, 0, Format.cell(title, screen.columns), .title)
        drawHealth(model, screen, after: title.count)
    }

    /// The pool's health at the title's right end, as `pool check` judges it: OK, or the level
    /// and the worst finding (with how many more), in the state colours.
    static func drawHealth(_ model: MonitorModel, _ screen: Screen, after used: Int) {
        guard let status = model.status else { return }
        let health = PoolHealth(status)
        var text = health.level.word
        if let worst = health.findings.first(where: { $0.level == health.level }) {
            text += ": " + worst.text + (health.findings.count > 1 ? " (+\(health.findings.count - 1))" : "")
        }
        let room = screen.columns - used - 3
        guard room >= health.level.word.count else { return }
        let shown = " " + Format.cell(text, min(text.count, room)) + " "
        let style: Element = switch health.level {
        case .ok: .stateOK
        case .warning: .stateWarn
        case .critical: .stateBad
        }
        screen.put(0, screen.columns - shown.count, shown, style)
    }

    static func drawTable(_ model: MonitorModel, _ screen: Screen, top: Int, height: Int) {
        var header = ""
        for column in columns(for: screen.columns) { header += Format.cell(column.title, column.width) + " " }
        screen.put(top, 0, Format.cell(header, screen.columns), .header)
        if model.rows.isEmpty {
            screen.put(top + 2, 2, model.filter.isEmpty ? "no volumes in this pool" : "nothing matches the filter", .dim)
            return
        }
        let first = max(0, model.selection - (height - 2))
        for (line, index) in (first..<min(model.rows.count, first + height - 1)).enumerated() {
            drawRow(model.rows[index], selected: index == model.selection, screen, row: top + 1 + line)
        }
    }

    static func drawRow(_ row: VolumeRow, selected: Bool, _ screen: Screen, row y: Int) {
        let columns = columns(for: screen.columns)
        let base: Element = selected ? .selected : (row.kind == .snapshot ? .text : .origin)
        if selected { screen.put(y, 0, Format.cell("", screen.columns), .selected) }
        let tree = row.kind == .snapshot ? (screen.unicode ? " └ " : " `-") : ""
        var x = 0
        func put(_ text: String, _ width: Int, right: Bool = false, _ element: Element? = nil) {
            screen.put(y, x, Format.cell(text, width, right: right), selected ? .selected : (element ?? base))
            x += width + 1
        }
        put(tree + row.name, columns[0].width)
        put(Format.size(row.size), columns[1].width, right: true)
        put(row.chunkSize.map { Format.size(UInt64($0)) } ?? "", columns[2].width, right: true)
        put(row.exceptions.map(String.init) ?? "", columns[3].width, right: true)
        if let fill = row.fillPercent {
            let barWidth = columns[4].width - 7
            let (filled, empty) = Format.bar(fill, width: barWidth, unicode: screen.unicode)
            // Coloured at the fill levels `pool check` warns at and calls critical.
            let element: Element = switch PoolHealth.Thresholds().level(ofFill: fill) {
            case .critical: .barHigh
            case .warning: .barMid
            case .ok, nil: .barLow
            }
            screen.put(y, x, filled, selected ? .selected : element)
            screen.put(y, x + filled.count, empty, selected ? .selected : .barEmpty)
            screen.put(y, x + barWidth, Format.cell(Format.percent(fill), 7, right: true), base)
            x += columns[4].width + 1
        } else {
            put("", columns[4].width)
        }
        put(row.pendingCopies.map(String.init) ?? "", columns[5].width, right: true)
        put(stateWord(row), columns[6].width, row.suspect ? .stateBad : stateElement(row.state))
        if columns.count > 8 {
            put(Format.rate(row.readRate), columns[7].width, right: true)
            put(Format.rate(row.writeRate), columns[8].width, right: true)
        }
    }

    /// The state, with a glyph so that meaning never rests on colour alone.
    static func stateWord(_ row: VolumeRow) -> String {
        switch row.state {
        case "invalid": return "! INVALID"
        case "overflow": return "! OVERFLOW"
        case "merge-failed": return "! MERGE-FAIL"
        case "inactive": return "- inactive"
        case "merging": return "~ merging"
        case "active" where row.suspect: return "? SUSPECT"
        default: return row.state
        }
    }

    static func stateElement(_ state: String) -> Element {
        switch state {
        case "active": return .stateOK
        case "merging", "inactive": return .stateWarn
        default: return .stateBad
        }
    }

    static func drawDetail(_ model: MonitorModel, _ view: ViewState, _ screen: Screen, top: Int, height: Int, now: Date) {
        let rule = screen.unicode ? "─" : "-"
        guard let row = model.selected else { return }
        screen.put(top, 0, Format.cell(String(repeating: rule, count: 2) + " \(row.name) ", screen.columns, right: false)
            .replacingOccurrencesOfSpaces(with: rule, after: row.name.count + 4), .border)
        let report = model.status?.snapshot(named: row.name)
        var lines: [String] = []
        if let report {
            lines.append("origin \(row.origin)   chunk \(Format.size(UInt64(report.chunkSize)))   exceptions \(report.exceptions)   pending copies \(report.pendingCopies)")
            lines.append("COW \(report.cowPath)   used \(Format.size(report.cowUsedBytes)) of \(Format.size(report.cowTotalBytes)) (\(Format.percent(report.fillPercent)))")
            lines.append("state \(report.state)" + (report.stateNote.map { " (\($0))" } ?? "") + clientsNote(report.clients) + "   dmsetup status: \(report.dmStatus)")
            if let table = report.table { lines.append("exception table \(table.summary)") }
            let taken = report.createdDate.map { "taken " + Format.taken($0, now: now) } ?? "taken: not known (attached)"
            lines.append(taken + (report.takenWith.map { ", at one instant with " + $0.joined(separator: ", ") } ?? ""))
        } else if let remap = model.status?.remaps.first(where: { $0.name == row.name }) {
            lines.append("remap volume: data \(remap.devicePath)   chunk \(Format.size(UInt64(remap.chunkSize)))   remapped \(remap.remapped)   awaiting a write \(remap.marked)")
            lines.append("spare \(remap.sparePath)   used \(Format.size(remap.spareUsedBytes)) of \(Format.size(remap.spareTotalBytes)) (\(Format.percent(remap.fillPercent)))")
            lines.append("state \(remap.state)" + (remap.reason.map { " (\($0))" } ?? "") + clientsNote(remap.clients))
        } else {
            let clients = model.status?.origin(named: row.name)?.clients
            lines.append("origin volume, \(Format.size(row.size)), state \(row.state)" + (row.reason.map { " (\($0))" } ?? "") + clientsNote(clients))
            lines.append("read \(Format.rate(row.readRate))   write \(Format.rate(row.writeRate))")
        }
        for (offset, line) in lines.enumerated() { screen.put(top + 1 + offset, 1, Format.cell(line, screen.columns - 2), .text) }
        var next = top + 1 + lines.count
        if let map = view.chunkMap, let report {
            screen.put(next, 1, "copied out:", .dim)
            let cells = String(map.map { Format.mapCell($0, unicode: screen.unicode) })
            screen.put(next, 13, "[" + cells + "]", .barLow)
            if let note = partialMapNote(report) {
                let column = 13 + cells.count + 3
                screen.put(next, column, Format.cell(note, max(0, screen.columns - column - 1)), .dim)
            }
            next += 1
        }
        let events = view.events.filter { $0.text.contains(row.name) }.suffix(max(0, top + height - next))
        for event in events {
            // An alarm is marked by its glyph too, not by colour alone.
            let text = (event.isAlarm ? "! " : "") + Format.clock(event.time) + " " + event.text
            screen.put(next, 1, Format.cell(text, screen.columns - 2), event.isAlarm ? .error : .dim)
            next += 1
        }
    }

    /// ", open by N NBD clients", when any are.
    static func clientsNote(_ clients: Int?) -> String {
        guard let clients, clients > 0 else { return "" }
        return ", open by " + VolumeClaims.describe(clients)
    }

    /// When a budget evicted parts of the exception table, the chunk map shows only the part in
    /// memory: says how much of the whole that is.
    static func partialMapNote(_ report: SnapshotReport) -> String? {
        guard let table = report.table, table.residentExceptions < report.exceptions else { return nil }
        return "in memory: \(table.residentExceptions) of \(report.exceptions)"
    }

    /// The prompt, or the last message; an error too long for one line (a refusal names the
    /// path and what to do) takes up to three, over the bottom of the detail pane.
    static func drawStatusLine(_ view: ViewState, _ screen: Screen) {
        guard view.prompt == nil, view.messageIsError else {
            screen.put(screen.rows - 2, 0, Format.cell(" " + (view.prompt ?? view.message), screen.columns), .status)
            return
        }
        let lines = Format.wrap(view.message, width: screen.columns - 1, limit: 3)
        for (index, line) in lines.enumerated() {
            screen.put(screen.rows - 1 - lines.count + index, 0, Format.cell(" " + line, screen.columns), .error)
        }
    }

    static func drawKeyBar(_ view: ViewState, _ screen: Screen) {
        let keys: [(String, String, Bool)] = [
            ("F1", "Help", false), ("F2", "New", true), ("F3", "Filter", false), ("F4", "Sort", false),
            ("F5", "Extend", true), ("F6", "Merge", true), ("F8", "Delete", true), ("F10", "Quit", false),
        ]
        var x = 0
        for (key, label, mutating) in keys {
            screen.put(screen.rows - 1, x, key, .keyLabel)
            x += key.count
            let shown = mutating && view.readOnly ? String(repeating: " ", count: label.count) : label
            screen.put(screen.rows - 1, x, Format.cell(shown, 7), .keyText)
            x += 7
        }
    }
}

extension String {
    /// Replaces the spaces after `position` with `fill` (to extend a rule line).
    func replacingOccurrencesOfSpaces(with fill: String, after position: Int) -> String {
        String(enumerated().map { $0.offset >= position && $0.element == " " ? Character(fill) : $0.element })
    }
}

/// The `?` screen: every key of the main view.
enum HelpOverlay {
    static let keys: [(String, String, Bool)] = [
        ("Up/Down, j/k", "select a volume", false), ("n, F2", "new snapshot (a form)", true),
        ("N", "snapshot every origin at one instant (a group)", true),
        ("d, F8", "delete the selected snapshot (asks)", true), ("m, F6", "merge the selected snapshot (asks)", true),
        ("e, F5", "extend the selected snapshot's COW, or resize the origin", true), ("r", "rename the selected snapshot or origin", true),
        ("t", "trust a suspect snapshot: clear its mark (asks)", true), ("l", "relocate an inactive volume (asks its path)", true),
        ("/, F3", "filter by name or state (Esc clears)", false),
        ("s, F4", "cycle the sort order", false), ("+ / -", "refresh slower / faster", false),
        ("p", "pause or resume refreshing", false), ("?, F1", "this help (any key closes)", false), ("q, F10", "quit", false),
    ]

    static func draw(readOnly: Bool, on screen: Screen) {
        let width = 64, height = keys.count + 4
        let top = max(1, (screen.rows - height) / 2), left = max(0, (screen.columns - width) / 2)
        for row in 0..<height { screen.put(top + row, left, Format.cell("", width), .header) }
        screen.put(top, left + 2, readOnly ? "Keys (READ-ONLY: changes are disabled)" : "Keys", .header)
        for (index, (key, what, mutating)) in keys.enumerated() {
            let note = mutating && readOnly ? "  [disabled: read-only]" : ""
            screen.put(top + 2 + index, left + 2, Format.cell(key, 14) + what + note, .header)
        }
    }
}
