import ArgumentParser
import Controller
import Foundation

extension SnapshotCommand {
    struct Prune: AsyncParsableCommand, ForwardableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete old snapshots: per origin, those beyond the N newest and older than an age.",
            discussion: """
                For cron, next to 'snapshot create nightly-$(date +%F) --all-origins':
                'snapshot prune --match "nightly-*" --keep 7'. A snapshot is deleted when it matches and is neither among \
                the --keep newest of its origin nor younger than --older-than (give either or both). Snapshots adopted \
                with 'snapshot attach' (their age is not known) and merging ones are left alone. Everything selected is \
                checked first, as by 'snapshot delete', so a refusal deletes none.
                """)
        @OptionGroup var options: PoolOptions
        @Option(help: "Keep this many of the newest matching snapshots of each origin.") var keep: Int?
        @Option(help: ArgumentHelp("Only delete snapshots older than this: 90m, 12h, 7d, 2w (s, m, h, d, w).", valueName: "age"))
        var olderThan: String?
        @Option(help: ArgumentHelp("Only snapshots whose name matches this shell pattern.", valueName: "pattern")) var match = "*"
        @Option(help: "Only this origin's snapshots (repeatable; default: every origin).", completion: VolumeCompletion.origins)
        var origin: [String] = []
        @Flag(help: "Say what would be deleted; delete nothing.") var dryRun = false
        @Flag(help: "Disconnect the NBD clients that have a selected snapshot open.") var force = false

        func run() async throws {
            try await guarded {
                let policy = SnapshotPrunePolicy(keep: keep, olderThan: try olderThan.map { try age($0, option: "--older-than") }, match: match, origins: origin)
                let selection = try await options.withController("snapvol snapshot prune") {
                    try await $0.pruneSnapshots(policy, dryRun: dryRun, force: force)
                }
                let kept = "\(selection.keep.count) kept"
                if selection.delete.isEmpty {
                    emit("nothing to prune (\(kept))")
                } else {
                    let names = selection.delete.joined(separator: ", ")
                    emit((dryRun ? "would delete " : "deleted ") + "snapshot\(selection.delete.count == 1 ? "" : "s") \(names) (\(kept))")
                }
                selection.keptFiles.forEach(printWarning)
                if !selection.ageUnknown.isEmpty {
                    emit("left alone, age not known (attached): " + selection.ageUnknown.joined(separator: ", "))
                }
            }
        }

    }
}
