import ArgumentParser
import Controller
import Foundation

/// `events`: what happened to the pool's volumes lately (created, invalidated, merged...), as
/// kept by the process that owns the pool: `snapvol serve`'s last 200 when it runs.
struct EventsCommand: AsyncParsableCommand, ForwardableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events",
        abstract: "The recent events of the process that owns the pool (snapvol serve's, when it runs).")
    @OptionGroup var options: PoolOptions
    @Flag(help: "Print the events as JSON (sequence, time, text, alarm).") var json = false
    @Option(help: ArgumentHelp("Only the events after this sequence number (for polling).", valueName: "sequence")) var after: Int?

    func run() async throws {
        try await guarded {
            let events = try await options.withController("snapvol events") { $0.events.since(after ?? -1) }
            if json { return try printJSON(events) }
            if events.isEmpty { return emit("no events (they are kept by the process that owns the pool: snapvol serve)") }
            for event in events { emit("\(event.time.formatted(.iso8601))  \(event.isAlarm ? "ALARM " : "")\(event.text)") }
        }
    }
}
