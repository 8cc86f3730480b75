import Foundation
import Glibc

/// How much a line of `serve`'s log matters, as a syslog priority.
enum LogLevel: Int {
    case error = 3
    case warning = 4
    case notice = 5
}

/// `serve`'s log: one line per notice on standard error. When standard error is the journal
/// (systemd says so in `$JOURNAL_STREAM`, the device and inode of the stream it connected),
/// each line starts with its priority (`<4>` for a warning), so `journalctl -p warning` finds
/// the warnings and errors.
///
/// Invariant: the prefix is written only when `$JOURNAL_STREAM` names this process's standard
/// error (a child's inherited variable, with stderr sent elsewhere, gets plain lines).
enum ServiceLog {
    static let toJournal: Bool = {
        guard let value = getenv("JOURNAL_STREAM").map({ String(cString: $0) }) else { return false }
        let parts = value.split(separator: ":")
        var info = stat()
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]), fstat(2, &info) == 0 else { return false }
        return UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode
    }()

    static func line(_ message: String, level: LogLevel) -> String {
        (toJournal ? "<\(level.rawValue)>" : "") + "snapvol: \(message)\n"
    }
}

func printNotice(_ message: String, level: LogLevel = .notice) {
    FileHandle.standardError.write(Data(ServiceLog.line(message, level: level).utf8))
}
