import Foundation
import Testing
import TestSupport

/// `pool check`, a monitoring plugin: the first line carries the level, the worst finding and
/// performance data; one line per finding follows; the exit status is the level (0 OK,
/// 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
@Suite(.mayBlock) struct PoolCheckTests {
    /// Origin `vm` (8 MiB) with snapshots `small` (1 MiB COW) and `big` (4 MiB COW), 16K chunks.
    static func pool() throws -> TestPool {
        let pool = try TestPool.withOrigin("vm", size: "8M")
        for (name, size) in [("small", "1M"), ("big", "4M")] {
            try pool.ok("snapshot", "create", name, "--origin", "vm", "--cow", pool.file("\(name).cow"), "--cow-size", size)
        }
        return pool
    }

    static func check(_ pool: TestPool, _ extra: String...) throws -> (status: Int32, lines: [String]) {
        let result = try pool.run(arguments: ["pool", "check"] + extra)
        #expect(result.stderr.isEmpty, "\(result.stderr)")
        return (result.status, result.text.split(separator: "\n").map(String.init))
    }

    @Test func levelsFollowTheFillAndTheLossOfASnapshot() throws {
        let pool = try Self.pool()
        let clean = try Self.check(pool)
        #expect(clean.status == 0)
        #expect(clean.lines == ["SNAPVOL OK - 1 origin, 2 snapshots; fullest COW: small 0% | unusable_snapshots=0;;1;0 "
                                + "'small'=0%;80;95;0;100 'big'=0%;80;95;0;100"])

        try pool.ok("io", "write", "vm", "0", "900K", "--pattern", "0x01")
        let filling = try Self.check(pool)
        #expect(filling.status == 1)
        #expect(filling.lines.count == 2)
        #expect(filling.lines.first?.hasPrefix("SNAPVOL WARNING - COW of small is 92% full; 1 origin, 2 snapshots | unusable_snapshots=0;;1;0 'small'=92.19%;80;95;0;100") == true,
                "\(filling.lines)")
        #expect(filling.lines.last == "WARNING: COW of small is 92% full")
        #expect(try Self.check(pool, "--warning-fill", "95", "--critical-fill", "99").status == 0, "the thresholds are the user's")
        #expect(try Self.check(pool, "--critical-fill", "90").status == 2)

        try pool.ok("io", "write", "vm", "1M", "2M", "--pattern", "0x01")
        let lost = try Self.check(pool, "--warning-fill", "50")
        #expect(lost.status == 2)
        #expect(lost.lines.first?.hasPrefix("SNAPVOL CRITICAL - snapshot small is invalid: invalidated on disk (and 1 more problem); 1 origin, 2 snapshots | unusable_snapshots=1;;1;0") == true,
                "\(lost.lines)")
        #expect(Array(lost.lines.dropFirst()) == ["CRITICAL: snapshot small is invalid: invalidated on disk", "WARNING: COW of big is 73% full"])

        let json = try #require(try JSONSerialization.jsonObject(with: pool.run("pool", "check", "--json").stdout) as? [String: Any])
        #expect(json["level"] as? String == "critical")
        #expect((json["findings"] as? [[String: String]])?.first == ["level": "critical", "volume": "small", "text": "snapshot small is invalid: invalidated on disk"])
    }

    /// `--max-age`: a snapshot older than that warns (each first write to its origin still pays
    /// a copy into it); its age is the one recorded at creation (moved back here in the registry).
    @Test func aForgottenSnapshotWarnsPastMaxAge() throws {
        let pool = try Self.pool()
        try pool.backdate("big", by: 10 * 86_400 + 60)

        #expect(try Self.check(pool).status == 0, "no age limit unless asked")
        let old = try Self.check(pool, "--max-age", "7d")
        #expect(old.status == 1)
        #expect(old.lines.last == "WARNING: snapshot big is 10 d old: every first write to vm still copies into it")
        #expect(try Self.check(pool, "--max-age", "2w").status == 0)
        let bad = try pool.run("pool", "check", "--max-age", "7x")
        #expect(bad.status == 64)
        #expect(bad.stderr == "snapvol: error: invalid --max-age '7x': a number and a unit, s, m, h, d or w (7d) (see 'snapvol --help')\n")
    }

    /// Performance data as monitoring systems parse it: space-separated `'label'=value[UOM];warn;crit;min;max`.
    @Test func performanceDataIsWellFormed() throws {
        let pool = try Self.pool()
        try pool.ok("io", "write", "vm", "0", "1M", "--pattern", "0x01")
        let line = try #require(try Self.check(pool).lines.first)
        let parts = line.split(separator: "|", omittingEmptySubsequences: false)
        #expect(parts.count == 2)
        let item = /^('[A-Za-z0-9._-]+'|[a-z_]+)=[0-9]+(\.[0-9]+)?%?;([0-9]+(\.[0-9]+)?)?;[0-9]+(\.[0-9]+)?;[0-9]+(;[0-9]+)?$/
        for entry in parts[1].split(separator: " ") { #expect(String(entry).wholeMatch(of: item) != nil, "\(entry)") }
    }

    @Test func aMissingPoolIsUnknownAndBadThresholdsAreUsageErrors() throws {
        let pool = try TestPool()
        let missing = try pool.run("pool", "check")
        #expect(missing.status == 3)
        #expect(missing.text == "SNAPVOL UNKNOWN - no pool at \(pool.path): run 'snapvol pool init' first\n")
        let missingJSON = try pool.run("pool", "check", "--json")
        #expect(missingJSON.status == 3)
        let unknown = try #require(try JSONSerialization.jsonObject(with: missingJSON.stdout) as? [String: Any])
        #expect(unknown["level"] as? String == "unknown")
        #expect(unknown["problem"] as? String == "no pool at \(pool.path): run 'snapvol pool init' first")
        let bad = try pool.run("pool", "check", "--warning-fill", "90", "--critical-fill", "80")
        #expect(bad.status == 64)
        #expect(bad.stderr == "snapvol: error: --warning-fill and --critical-fill are percentages from 0 to 100, the warning at most the critical (see 'snapvol --help')\n")
    }

    /// A pool another process owns without serving it (the TUI, a long merge): `status` is
    /// refused, the check reads the pool from disk without waiting for the lock.
    @Test(.enabled(if: Environment.canRun(commands: ["flock"])))
    func aLockedPoolIsCheckedFromDisk() throws {
        let pool = try Self.pool()
        let holder = try PoolLockHolder(pool: pool.path)
        defer { withExtendedLifetime(holder) {} }
        #expect(try pool.run("status", "--wait", "0").status == 1, "the pool is held")
        #expect(try Self.check(pool).status == 0)
    }

    /// Through `serve`: live figures; a snapshot whose COW is missing is critical, first with
    /// the warning that the origin's next write gives it up, then given up.
    @Test func aServedPoolIsCheckedLive() throws {
        let pool = try Self.pool()
        try FileManager.default.moveItem(atPath: pool.file("big.cow"), toPath: pool.file("big.away"))
        let server = try ServeProcess(pool: pool)
        let missing = try Self.check(pool)
        #expect(missing.status == 2)
        #expect(missing.lines.last?.hasPrefix("CRITICAL: snapshot big is inactive: ") == true, "\(missing.lines)")
        #expect(missing.lines.last?.hasSuffix("; the origin's next write gives it up") == true, "\(missing.lines)")
        try pool.ok("io", "write", "vm", "0", "256K", "--pattern", "0x01")
        let served = try Self.check(pool)
        #expect(served.status == 2)
        #expect(served.lines.count == 2)
        #expect(served.lines.last?.hasPrefix("CRITICAL: snapshot big is invalid: its origin was written while its COW could not be opened") == true,
                "\(served.lines)")
        #expect(served.lines.first?.contains("'small'=28.13%;80;95;0;100") == true, "\(served.lines)")
        #expect(server.stop() == 0)
    }
}
