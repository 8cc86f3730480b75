import ArgumentParser
import Controller
import Foundation

/// `events`: what happened to the pool's volumes lately (created, invalidated, merged...): the
/// last 200, from the process holding the pool when one does (with its merge progress), else
/// from the pool's event log, without taking the lock.
struct EventsCommand: AsyncParsableCommand, ForwardableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events",
        abstract: "The pool's recent events (the last 200): created, invalidated, merged, renamed...")
    @OptionGroup var options: PoolOptions
    @Flag(help: "Print the events as JSON (sequence, time, text, alarm).") var json = false
    @Option(help: ArgumentHelp("Only the events after this sequence number (for polling).", valueName: "sequence")) var after: Int?
    @Flag(name: [.short, .long], help: "Keep printing new events as they come (one JSON object per line with --json), until interrupted.")
    var follow = false

    var runsInHolder: Bool { !follow }

    func run() async throws {
        try await guarded {
            if follow { return try await self.follow(after: after ?? -1) }
            let after = after ?? -1
            let events = try options.owner()?.events.since(after) ?? PoolObserver.events(options.location).filter { $0.sequence > after }
            if json { return try printJSON(events) }
            if events.isEmpty { return emit("no events") }
            for event in events { print(event) }
        }
    }

    private func print(_ event: EventJournal.Entry) {
        emit("\(event.time.formatted(.iso8601))  \(event.isAlarm ? "ALARM " : "")\(event.text)")
    }

    /// `tail -f` for events: once a second, what is new, from the holder of the pool when one
    /// answers (with merge progress), else from the event log.
    private func follow(after start: Int) async throws {
        var seen = start
        let encoder = JSONEncoder()
        while !Task.isCancelled {
            for event in try newEvents(after: seen) {
                if json { emit(String(decoding: try encoder.encode(event), as: UTF8.self)) } else { print(event) }
                seen = event.sequence
            }
            try await Task.sleep(for: .seconds(1))
        }
    }

    private func newEvents(after sequence: Int) throws -> [EventJournal.Entry] {
        try ControlClient.events(after: sequence, location: options.location)
            ?? PoolObserver.events(options.location).filter { $0.sequence > sequence }
    }
}
