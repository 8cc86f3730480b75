import Foundation
import Synchronization

/// Recent events, newest last, for status displays (the TUI's event pane, `snapvol events`):
/// the last `capacity` in memory, and, with a log, every one but progress written to the pool's
/// `events.log`, so that they outlive the process that saw them (a snapshot invalidated during
/// a cron job's command) and read-only monitors can show them.
///
/// Invariant: sequences increase by one per event, also across the processes that append to one
/// log (one at a time: the pool's holder), so a reader may ask for what is new.
public final class EventJournal: Sendable {
    /// One event as shown: when, and its text. Sequences are unique and increasing. As JSON
    /// (`snapvol events --json`, read back by an attached TUI) its time is ISO 8601 in UTC.
    public struct Entry: Sendable, Equatable, Codable {
        /// Increases by one per event, so a reader can ask for what is new.
        public let sequence: Int
        public let time: Date
        public let text: String
        /// A snapshot lost (invalidated, overflowed) or a merge that failed: an operator must act.
        public let isAlarm: Bool

        enum CodingKeys: String, CodingKey { case sequence, time, text, isAlarm = "alarm" }

        public init(sequence: Int, time: Date, text: String, isAlarm: Bool) {
            self.sequence = sequence
            self.time = time
            self.text = text
            self.isAlarm = isAlarm
        }

        public init(from decoder: any Decoder) throws {
            let values = try decoder.container(keyedBy: CodingKeys.self)
            sequence = try values.decode(Int.self, forKey: .sequence)
            time = try Date(values.decode(String.self, forKey: .time), strategy: .iso8601)
            text = try values.decode(String.self, forKey: .text)
            isAlarm = try values.decode(Bool.self, forKey: .isAlarm)
        }

        public func encode(to encoder: any Encoder) throws {
            var values = encoder.container(keyedBy: CodingKeys.self)
            try values.encode(sequence, forKey: .sequence)
            try values.encode(time.formatted(.iso8601), forKey: .time)
            try values.encode(text, forKey: .text)
            try values.encode(isAlarm, forKey: .isAlarm)
        }
    }

    private let entries: Mutex<(list: [Entry], next: Int)>
    private let log: EventLog?
    public static let capacity = 200

    /// A journal continuing `log` (its last `capacity` events, numbered on from them), or, without
    /// one, kept in memory only.
    public init(log: EventLog? = nil) {
        self.log = log
        let loaded = log?.tail(Self.capacity) ?? []
        entries = Mutex((loaded, (loaded.last?.sequence ?? -1) + 1))
    }

    /// Records an event; `logged: false` keeps it out of the log (progress, which only a live
    /// display needs).
    public func record(_ text: String, alarm: Bool = false, logged: Bool = true) {
        entries.withLock { state in
            let entry = Entry(sequence: state.next, time: Date(), text: text, isAlarm: alarm)
            state.list.append(entry)
            state.next += 1
            if state.list.count > Self.capacity { state.list.removeFirst(state.list.count - Self.capacity) }
            // Under the lock: lines reach the log in sequence order.
            if logged { log?.append(entry) }
        }
    }

    public var recent: [Entry] { entries.withLock { $0.list } }

    /// The events recorded after `sequence` (all of them for -1).
    public func since(_ sequence: Int) -> [Entry] { recent.filter { $0.sequence > sequence } }
}

/// A pool's event log: one JSON line per event (`EventJournal.Entry`), appended by the process
/// holding the pool and read by anyone without the lock. Best effort: a write that fails (a full
/// file system) is dropped, since an event must never fail I/O, and a line torn by a crash is
/// skipped when read.
///
/// Invariant: `path` stays under about `rotationBytes`; beyond, it becomes `path.1` (replacing the
/// older one) and a new file starts.
public struct EventLog: Sendable {
    public let path: String
    static let rotationBytes: UInt64 = 1 << 20

    public init(path: String) { self.path = path }

    /// The last `count` events of the log (and of its rotated part), oldest first.
    public func tail(_ count: Int) -> [EventJournal.Entry] {
        let decoder = JSONDecoder()
        let lines = ["\(path).1", path].flatMap { file -> [Substring] in
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { return [] }
            return text.split(separator: "\n")
        }
        return Array(lines.compactMap { try? decoder.decode(EventJournal.Entry.self, from: Data($0.utf8)) }.suffix(count))
    }

    func append(_ entry: EventJournal.Entry) {
        guard var line = try? JSONEncoder().encode(entry) else { return }
        line.append(UInt8(ascii: "\n"))
        let fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return }
        // After a line torn by a crash, start a new one rather than extend it.
        var last: UInt8 = 0
        if info.st_size > 0, pread(fd, &last, 1, info.st_size - 1) == 1, last != UInt8(ascii: "\n") {
            line.insert(UInt8(ascii: "\n"), at: 0)
        }
        let written = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if UInt64(info.st_size) + UInt64(max(written, 0)) > Self.rotationBytes { rename(path, "\(path).1") }
    }
}
