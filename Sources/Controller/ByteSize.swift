import ExceptionMachinery
import Foundation

/// Parses sizes and offsets as users type them: plain bytes (`4096`), binary suffixes
/// (`16K`, `1.5G`, `2T`, also `KiB`, `MiB`...), or 512-byte sectors (`2048s`).
/// Anything else, a fraction that is not a whole number of bytes, or an overflow is refused.
public enum ByteSize {
    private static let suffixes: [(String, UInt64)] = [
        ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("TiB", 1 << 40),
        ("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("T", 1 << 40),
        ("k", 1 << 10), ("m", 1 << 20), ("g", 1 << 30), ("t", 1 << 40), ("s", 512), ("B", 1),
    ]

    public static func parse(_ text: String) throws -> UInt64 {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        var number = Substring(trimmed)
        var multiplier: UInt64 = 1
        if let (suffix, factor) = suffixes.first(where: { trimmed.hasSuffix($0.0) }) {
            number = number.dropLast(suffix.count)
            multiplier = factor
        }
        guard !number.isEmpty, number.filter({ $0 == "." }).count <= 1, number.first != ".", number.last != ".",
              number.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }) else {
            throw ControllerError.badSize(text)
        }
        if let whole = UInt64(number) {
            let (value, overflow) = whole.multipliedReportingOverflow(by: multiplier)
            guard !overflow else { throw ControllerError.badSize(text) }
            return value
        }
        guard let fraction = Decimal(string: String(number)), multiplier > 1 else { throw ControllerError.badSize(text) }
        let value = fraction * Decimal(multiplier)
        var rounded = Decimal()
        var copy = value
        NSDecimalRound(&rounded, &copy, 0, .plain)
        guard rounded == value, value < Decimal(UInt64.max), let result = UInt64(exactly: NSDecimalNumber(decimal: value).uint64Value),
              Decimal(result) == value else { throw ControllerError.badSize(text) }
        return result
    }

    /// "16 KiB", "1.5 GiB": the form status tables use.
    public static func describe(_ bytes: UInt64) -> String { ByteCount.describe(bytes) }
}
