import Foundation
import Glibc

/// Which snapshots `snapshot prune` deletes: among those whose name matches `match` (a shell
/// pattern) on the origins given (all when empty), per origin, those that are neither among the
/// `keep` newest nor younger than `olderThan`. At least one of the two limits is set.
///
/// Invariant: a snapshot whose age is not known (adopted with `snapshot attach`) or that is
/// being merged is never selected.
public struct SnapshotPrunePolicy: Sendable, Equatable {
    public var keep: Int?
    public var olderThan: TimeInterval?
    public var match: String
    public var origins: [String]

    public init(keep: Int?, olderThan: TimeInterval?, match: String = "*", origins: [String] = []) {
        self.keep = keep
        self.olderThan = olderThan
        self.match = match
        self.origins = origins
    }
}

/// What a prune selected: the snapshots to delete (oldest first), those kept, and those left
/// alone because their age is not known.
public struct PruneSelection: Sendable, Equatable {
    public var delete: [String] = []
    public var keep: [String] = []
    public var ageUnknown: [String] = []
    /// COW files of deleted snapshots kept because their paths no longer hold those COWs.
    public var keptFiles: [String] = []
}

extension SnapshotPrunePolicy {
    /// The selection in `registry` at `now`; refused when a named origin does not exist or the
    /// policy sets no limit.
    public func select(in registry: Registry, now: Date) throws -> PruneSelection {
        guard keep != nil || olderThan != nil else { throw ControllerError.refused("give --keep N, --older-than AGE, or both") }
        if let keep, keep < 0 { throw ControllerError.refused("invalid --keep \(keep): a count from 0") }
        for origin in origins where registry.origin(named: origin) == nil { throw ControllerError.unknownOrigin(origin) }
        var selection = PruneSelection()
        for origin in registry.origins where origins.isEmpty || origins.contains(origin.name) {
            let matching = origin.snapshots.filter { fnmatch(match, $0.name, 0) == 0 && !$0.merging }
            selection.ageUnknown += matching.filter { $0.created == nil }.map(\.name)
            // Newest first; a tie (times are kept to the second) goes to the one created later.
            let dated = matching.enumerated().compactMap { index, record in record.created.map { (index, record.name, $0) } }
                .sorted { ($0.2, $0.0) > ($1.2, $1.0) }
            var doomed: [String] = []
            for (rank, (_, name, created)) in dated.enumerated() {
                let beyondKeep = keep.map { rank >= $0 } ?? true
                let old = olderThan.map { now.timeIntervalSince(created) > $0 } ?? true
                if beyondKeep && old { doomed.append(name) } else { selection.keep.append(name) }
            }
            selection.delete += doomed.reversed()
        }
        return selection
    }
}

extension Controller {
    /// Deletes what `policy` selects now, as one `deleteSnapshots` (all checked first, so a
    /// refusal, such as a selected snapshot open by a client without `force`, deletes none).
    /// With `dryRun`, only selects.
    @discardableResult
    public func pruneSnapshots(_ policy: SnapshotPrunePolicy, dryRun: Bool = false, force: Bool = false) async throws -> PruneSelection {
        var selection = try policy.select(in: registry, now: Date())
        if !dryRun && !selection.delete.isEmpty { selection.keptFiles = try await deleteSnapshots(names: selection.delete, force: force) }
        return selection
    }
}
