import Controller
import Foundation

/// Short human figures for table cells.
enum Format {
    static func size(_ bytes: UInt64) -> String { ByteSize.describe(bytes) }

    /// Compact rates for narrow columns: "0", "512B/s", "876K/s", "1.2M/s".
    static func rate(_ bytesPerSecond: Double) -> String {
        if bytesPerSecond < 1 { return "0" }
        let units = ["B", "K", "M", "G", "T"]
        var value = bytesPerSecond
        var unit = 0
        while value >= 1000 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        let text = value < 10 && unit > 0 ? "\(Int(value * 10) / 10).\(Int(value * 10) % 10)" : "\(Int(value.rounded()))"
        return text + units[unit] + "/s"
    }

    /// "1s", "0.5s", "0.25s".
    static func seconds(_ value: Double) -> String {
        value == value.rounded() ? "\(Int(value))s" : "\(value)s"
    }

    /// How long ago, in its two largest units: "40 s", "12 min", "3 h 5 min", "4 d 2 h".
    /// "23:58:12", local time: when an event happened.
    static func clock(_ date: Date) -> String {
        date.formatted(Date.FormatStyle().hour(.twoDigits(amPM: .omitted)).minute(.twoDigits).second(.twoDigits))
    }

    /// "2026-11-30 23:58 UTC, 12 min ago": when a snapshot was taken, from `now`.
    static func taken(_ date: Date, now: Date) -> String {
        let utc = date.formatted(Date.ISO8601FormatStyle(dateSeparator: .dash, dateTimeSeparator: .space, timeZone: .gmt)
            .year().month().day().time(includingFractionalSeconds: false))
        return "\(utc) UTC, \(Wording.age(now.timeIntervalSince(date))) ago"
    }

    static func percent(_ value: Double) -> String {
        let tenths = Int((value * 10).rounded())
        return "\(tenths / 10).\(tenths % 10)%"
    }

    /// `text` cut or padded to exactly `width` characters.
    static func cell(_ text: String, _ width: Int, right: Bool = false) -> String {
        if text.count >= width { return String(text.prefix(width)) }
        let pad = String(repeating: " ", count: width - text.count)
        return right ? pad + text : text + pad
    }

    /// `text` broken at spaces into lines of at most `width` characters (a word longer than
    /// that is cut), at most `limit` lines; when more would be needed the last one ends in "…".
    static func wrap(_ text: String, width: Int, limit: Int) -> [String] {
        var lines: [String] = []
        var line = ""
        for word in text.split(separator: " ", omittingEmptySubsequences: false).map(String.init) {
            if !line.isEmpty, line.count + 1 + word.count > width {
                lines.append(line)
                line = ""
            }
            line += (line.isEmpty ? "" : " ") + word
            while line.count > width {
                lines.append(String(line.prefix(width)))
                line = String(line.dropFirst(width))
            }
        }
        lines.append(line)
        guard lines.count > limit else { return lines }
        return Array(lines.prefix(limit - 1)) + [String(lines[limit - 1].prefix(width - 1)) + "…"]
    }

    /// A fill bar of `width` cells for `percent` (0-100).
    static func bar(_ percent: Double, width: Int, unicode: Bool) -> (filled: String, empty: String) {
        let cells = Int((percent / 100 * Double(width)).rounded(.up))
        let filled = min(max(cells, percent > 0 ? 1 : 0), width)
        return (String(repeating: unicode ? "█" : "#", count: filled), String(repeating: unicode ? "░" : ".", count: width - filled))
    }

    /// One character per chunk-map cell: how much of that part of the origin is copied out.
    static func mapCell(_ fraction: Double, unicode: Bool) -> Character {
        let shades: [Character] = unicode ? [" ", "░", "▒", "▓", "█"] : [" ", ".", ":", "+", "#"]
        if fraction <= 0 { return shades[0] }
        return shades[min(4, 1 + Int(fraction * 3.999))]
    }
}
