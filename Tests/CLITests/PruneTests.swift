import Controller
import Foundation
import Testing
import TestSupport

/// `snapshot prune`: which snapshots a policy selects (properties over seeded random pools), and
/// the command end to end, through a server too.
@Suite(.mayBlock) struct PruneTests {
    /// Over random pools and policies: the selection partitions the candidates; the kept ones
    /// are the newest (at least `keep` of them) or young enough; no undated or merging
    /// snapshot, and none outside the pattern or the origins asked for, is ever deleted.
    @Test func selectionsKeepTheNewestAndTouchNothingElse() throws {
        var generator = SeededGenerator.fromEnvironment()
        let seed = generator.seed
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        for round in 0..<300 {
            var registry = Registry()
            for originIndex in 0..<Int.random(in: 1...3, using: &generator) {
                var origin = OriginRecord(name: "o\(originIndex)", path: "/o\(originIndex)")
                for index in 0..<Int.random(in: 0...8, using: &generator) {
                    let prefix = ["n", "w", "keep"].randomElement(using: &generator)!
                    var record = SnapshotRecord(name: "\(prefix)-\(originIndex)-\(index)", cowPath: "/c\(originIndex)-\(index)", chunkSize: 4096)
                    // Whole hours back, so ties happen too.
                    record.created = Bool.random(using: &generator) && index > 0 && Int.random(in: 0..<8, using: &generator) == 0
                        ? nil : now.addingTimeInterval(-3_600 * Double(Int.random(in: 0...48, using: &generator)))
                    record.merging = Int.random(in: 0..<10, using: &generator) == 0
                    origin.snapshots.append(record)
                }
                registry.origins.append(origin)
            }
            let keep = Bool.random(using: &generator) ? Int.random(in: 0...4, using: &generator) : nil
            let olderThan = keep == nil || Bool.random(using: &generator) ? 3_600 * Double(Int.random(in: 0...30, using: &generator)) : nil
            let match = ["*", "n-*", "[nw]-*"].randomElement(using: &generator)!
            let origins = Bool.random(using: &generator) ? [] : ["o0"]
            let policy = SnapshotPrunePolicy(keep: keep, olderThan: olderThan, match: match, origins: origins)
            let selection = try policy.select(in: registry, now: now)
            let context = "seed \(seed) round \(round): \(policy)"

            let chosen = registry.origins.filter { origins.isEmpty || origins.contains($0.name) }.flatMap(\.snapshots)
                .filter { fnmatch(match, $0.name, 0) == 0 && !$0.merging }
            let all = selection.delete + selection.keep + selection.ageUnknown
            #expect(all.sorted() == chosen.map(\.name).sorted(), "\(context)")
            #expect(Set(all).count == all.count, "\(context)")
            #expect(Set(selection.ageUnknown) == Set(chosen.filter { $0.created == nil }.map(\.name)), "\(context)")
            for origin in registry.origins {
                let records = Dictionary(uniqueKeysWithValues: origin.snapshots.map { ($0.name, $0) })
                let deleted = selection.delete.compactMap { records[$0] }
                let kept = selection.keep.compactMap { records[$0] }
                for record in deleted { #expect(olderThan.map { now.timeIntervalSince(record.created!) > $0 } ?? true, "\(context)") }
                if let keep { #expect(kept.count >= min(keep, deleted.count + kept.count), "\(context)") }
                if olderThan == nil, let newestDeleted = deleted.map({ $0.created! }).max(), let oldestKept = kept.map({ $0.created! }).min() {
                    #expect(newestDeleted <= oldestKept, "\(context)")
                }
            }
        }
    }

    static func pool() throws -> TestPool {
        let pool = try TestPool()
        try pool.ok("pool", "init")
        for origin in ["a", "b"] { try pool.ok("origin", "add", origin, "--path", pool.file("\(origin).img"), "--size", "1M") }
        for night in 1...4 { try pool.ok("snapshot", "create", "n\(night)", "--all-origins", "--cow-size", "256K") }
        try pool.ok("snapshot", "create", "keepme", "--origin", "a", "--cow", pool.file("keepme.cow"), "--cow-size", "256K")
        return pool
    }

    static func names(_ pool: TestPool) throws -> Set<String> {
        let json = try #require(try JSONSerialization.jsonObject(with: pool.ok("status", "--json").stdout) as? [String: Any])
        let origins = try #require(json["origins"] as? [[String: Any]])
        return Set(origins.flatMap { ($0["snapshots"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String } })
    }

    @Test func pruneKeepsTheNewestOfEachOrigin() throws {
        let pool = try Self.pool()
        let everything = try Self.names(pool)
        let dry = try pool.ok("snapshot", "prune", "--match", "n*", "--keep", "2", "--dry-run")
        #expect(dry.text == "would delete snapshots n1-a, n2-a, n1-b, n2-b (4 kept)\n")
        #expect(try Self.names(pool) == everything)
        let done = try pool.ok("snapshot", "prune", "--match", "n*", "--keep", "2")
        #expect(done.text == "deleted snapshots n1-a, n2-a, n1-b, n2-b (4 kept)\n")
        #expect(try Self.names(pool) == ["n3-a", "n3-b", "n4-a", "n4-b", "keepme"])
        #expect(!FileManager.default.fileExists(atPath: pool.file("pool/n1-a.cow")), "the COW files it made go too")
        #expect(try pool.ok("snapshot", "prune", "--match", "n*", "--keep", "2").text == "nothing to prune (4 kept)\n")
    }

    /// A snapshot renamed out of the pattern is kept by a prune; its group's partner knows its new
    /// name, reads go on, and the engine's events use the new name.
    @Test func renamingKeepsASnapshotFromThePrune() throws {
        let pool = try Self.pool()
        #expect(try pool.ok("snapshot", "rename", "n1-a", "before-upgrade-a").text == "renamed snapshot n1-a to before-upgrade-a\n")
        #expect(try pool.snapshotStatus("n1-b")?["taken_with"] as? [String] == ["before-upgrade-a"])
        #expect(try pool.snapshotStatus("before-upgrade-a")?["taken_with"] as? [String] == ["n1-b"])
        #expect(try pool.snapshotStatus("n1-a") == nil)
        #expect(try pool.ok("io", "read", "before-upgrade-a", "0", "4K").stdout.count == 4096)
        #expect(try pool.ok("snapshot", "prune", "--match", "n*", "--keep", "1", "--origin", "a").text
                == "deleted snapshots n2-a, n3-a (1 kept)\n")
        #expect(try Self.names(pool).contains("before-upgrade-a"))
        let cases: [([String], String)] = [
            (["nope", "x"], "no snapshot named 'nope' in this pool"),
            (["a", "x"], "'a' is an origin: use 'origin rename'"),
            (["n4-a", "keepme"], "a volume named 'keepme' already exists in this pool"),
            (["n4-a", "bad/name"], "invalid volume name 'bad/name': use 1-64 letters, digits, '.', '_' or '-', not starting with '-' or '.'"),
        ]
        for (arguments, message) in cases {
            let result = try pool.run(arguments: ["snapshot", "rename"] + arguments)
            #expect(result.status == 1, "\(arguments)")
            #expect(result.stderr == "snapvol: error: \(message)\n", "\(arguments): \(result.stderr)")
        }
        #expect(try pool.snapshotStatus("n4-a") != nil)
    }

    /// `--older-than` counts from each snapshot's recorded time (moved back here in the
    /// registry, as ten days of cron would).
    @Test func olderThanCountsFromWhenEachWasTaken() throws {
        let pool = try Self.pool()
        try pool.backdate("n3-a", by: 10 * 86_400)

        #expect(try pool.ok("snapshot", "prune", "--older-than", "7d").text == "deleted snapshot n3-a (8 kept)\n")
        // Both limits: n4-a is among the newest two of a, so nothing goes.
        #expect(try pool.ok("snapshot", "prune", "--older-than", "0s", "--keep", "5", "--origin", "a").text == "nothing to prune (4 kept)\n")
    }

    @Test func badPoliciesAreRefusedWithOneLine() throws {
        let pool = try Self.pool()
        let everything = try Self.names(pool)
        let cases: [([String], String)] = [
            ([], "give --keep N, --older-than AGE, or both"),
            (["--older-than", "7x"], "invalid --older-than '7x': a number and a unit, s, m, h, d or w (7d)"),
            (["--keep=-1"], "invalid --keep -1: a count from 0"),
            (["--keep", "1", "--origin", "nope"], "no origin named 'nope' in this pool"),
        ]
        for (arguments, message) in cases {
            let result = try pool.run(arguments: ["snapshot", "prune"] + arguments)
            #expect(result.status == 1, "\(arguments)")
            #expect(result.stderr == "snapvol: error: \(message)\n", "\(arguments)")
        }
        #expect(try Self.names(pool) == everything)
    }

    /// Through a server: a selected snapshot open by an NBD client refuses the prune (none is
    /// deleted) until `--force`.
    @Test func aSnapshotInUseStopsThePruneUntilForce() throws {
        let pool = try Self.pool()
        let server = try ServeProcess(pool: pool)
        let (client, go) = try RawSocket.transmitting(server.socket, export: "n1-b")
        #expect(go.count == 86)
        let refused = try pool.run("snapshot", "prune", "--match", "n*", "--keep", "3")
        #expect(refused.status == 1)
        #expect(refused.stderr.hasPrefix("snapvol: error: volume 'n1-b' is in use by 1 NBD client"))
        #expect(try Self.names(pool).isSuperset(of: ["n1-a", "n1-b"]))
        #expect(try pool.ok("snapshot", "prune", "--match", "n*", "--keep", "3", "--force").text == "deleted snapshots n1-a, n1-b (6 kept)\n")
        #expect(client.closedByPeer())
        // Renaming a snapshot in use is refused the same way, then done with --force.
        let (other, _) = try RawSocket.transmitting(server.socket, export: "n2-a")
        #expect(try pool.run("snapshot", "rename", "n2-a", "kept-a").stderr.hasPrefix("snapvol: error: volume 'n2-a' is in use by 1 NBD client"))
        #expect(try pool.ok("snapshot", "rename", "n2-a", "kept-a", "--force").text == "renamed snapshot n2-a to kept-a\n")
        #expect(other.closedByPeer())
        let (renamed, answer) = try RawSocket.transmitting(server.socket, export: "kept-a")
        #expect(answer.count == 86, "the export answers to its new name")
        _ = renamed
        #expect(server.stop() == 0)
    }
}
