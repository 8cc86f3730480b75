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

    func run() async throws {
        try await guarded {
            let after = after ?? -1
            let events = try options.owner()?.events.since(after) ?? PoolObserver.events(options.location).filter { $0.sequence > after }
            if json { return try printJSON(events) }
            if events.isEmpty { return emit("no events") }
            for event in events { emit("\(event.time.formatted(.iso8601))  \(event.isAlarm ? "ALARM " : "")\(event.text)") }
        }
    }
}
