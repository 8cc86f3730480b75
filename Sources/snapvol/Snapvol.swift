import ArgumentParser
import Foundation

@main
struct Snapvol: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapvol",
        abstract: "Copy-on-write snapshot volumes in user space, compatible with dm-snapshot.",
        discussion: """
            A pool (--pool DIR, before or after the command; else $SNAPVOL_POOL, else \
            /var/lib/snapvol for root, else $XDG_DATA_HOME/snapvol) records origins and their \
            snapshots. Sizes and offsets take \
            bytes, binary K/M/G/T suffixes, or s for 512-byte sectors.
            """,
        version: "0.1.0",
        subcommands: [PoolCommand.self, OriginCommand.self, SnapshotCommand.self, StatusCommand.self, EventsCommand.self,
                      IOCommand.self, CheckCommand.self, RemapCommand.self, ServeCommand.self, TUICommand.self, MonitorCommand.self, DemoCommand.self, BenchCommand.self]
    )

    /// Like the default entry point, but a usage error is one line on stderr (exit 64).
    static func main() async {
        do {
            var command = try parseAsRoot(CommandArguments.current)
            if let forwardable = command as? ForwardableCommand, forwardable.runsInHolder,
               let status = ControlClient.forward(CommandArguments.current, location: forwardable.options.location) {
                Foundation.exit(status)
            }
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            let code = exitCode(for: error)
            if code == .validationFailure {
                printError("\(message(for: error)) (see 'snapvol --help')")
                exit(withError: ExitCode.validationFailure)
            }
            exit(withError: error)
        }
    }
}
