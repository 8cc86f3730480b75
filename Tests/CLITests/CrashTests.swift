import Foundation
import Testing
import TestSupport

/// Process crashes: `snapvol` commands (origin writes, snapshot creation, merges) killed with
/// SIGKILL at random instants. After each kill every COW device checks clean and every snapshot
/// still equals the origin image at its creation; an interrupted merge resumes and restores it.
/// `SNAPVOL_CRASH_TRIALS` raises the count for a soak.
@Suite(.mayBlock) struct CrashTests {
    static let trials = Int(Environment.value("SNAPVOL_CRASH_TRIALS") ?? "") ?? 20

    static func dump(_ pool: TestPool, _ volume: String) throws -> [UInt8] {
        let path = pool.file("dump.img")
        try pool.ok("io", "dump", volume, "--output", path)
        return [UInt8](FileManager.default.contents(atPath: path)!)
    }

    /// Starts `snapvol <arguments>` and kills it with SIGKILL after `delay` seconds.
    static func kill(after delay: Double, _ pool: TestPool, _ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: SnapvolBinary.path)
        process.arguments = arguments + ["--pool", pool.path]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        Thread.sleep(forTimeInterval: delay)
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    @Test func killedCommandsLoseNoSnapshotData() throws {
        var generator = SeededGenerator.fromEnvironment()
        let pool = try TestPool()
        try pool.ok("pool", "init")
        try pool.ok("origin", "add", "data", "--path", pool.file("data.img"), "--size", "8M")
        try pool.ok("io", "write", "data", "0", "8M", "--pattern", "1")
        var snapshots: [String: [UInt8]] = [:]
        var kills = 0
        for trial in 0..<Self.trials {
            let delay = Double.random(in: 0.0...0.25, using: &generator)
            switch Int.random(in: 0..<10, using: &generator) {
            case 0..<2 where snapshots.count < 3:
                let name = "s\(trial)"
                let image = try Self.dump(pool, "data")
                try Self.kill(after: delay, pool, ["snapshot", "create", name, "--origin", "data", "--cow", pool.file("\(name).cow"),
                                                  "--chunk-size", ["4K", "16K", "64K"][trial % 3], "--cow-size", "12M"])
                if try pool.snapshotStatus(name) != nil { snapshots[name] = image }
            case 2 where !snapshots.isEmpty:
                let name = snapshots.keys.sorted()[0]
                try Self.kill(after: delay, pool, ["snapshot", "merge", name, "--no-progress"])
                if try pool.snapshotStatus(name) != nil { try pool.ok("snapshot", "merge", name, "--no-progress") }
                #expect(sameBytes(try Self.dump(pool, "data"), snapshots[name]!), "trial \(trial): merge of \(name); seed \(generator.seed)")
                snapshots[name] = nil
            default:
                let offset = Int.random(in: 0..<(6 << 20), using: &generator)
                let length = Int.random(in: 1...(2 << 20), using: &generator)
                try Self.kill(after: delay, pool, ["io", "write", "data", "\(offset)", "\(length)", "--pattern", "\(trial % 250 + 2)"])
            }
            kills += 1
            for (name, image) in snapshots {
                let check = try SnapvolBinary.run(["check", pool.file("\(name).cow"), "--origin-size", "8M"])
                #expect(check.status == 0, "trial \(trial): \(name).cow: \(check.text); seed \(generator.seed)")
                #expect(sameBytes(try Self.dump(pool, name), image), "trial \(trial): \(name) differs; seed \(generator.seed)")
                #expect(try pool.snapshotStatus(name)?["suspect"] == nil,
                        "trial \(trial): a killed command taken for a write outside snapvol; seed \(generator.seed)")
            }
        }
        #expect(kills == Self.trials)
    }

    /// A group create killed at random instants leaves all of the group or none of it: both
    /// snapshots registered, checking clean and equal to their origins, or neither.
    @Test func aKilledGroupCreateLeavesAllOrNothing() throws {
        var generator = SeededGenerator.fromEnvironment()
        let pool = try TestPool()
        try pool.ok("pool", "init")
        for (name, pattern) in [("a", "0x0A"), ("b", "0x0B")] {
            try pool.ok("origin", "add", name, "--path", pool.file("\(name).img"), "--size", "4M")
            try pool.ok("io", "write", name, "0", "4M", "--pattern", pattern)
        }
        let images = ["a": try Self.dump(pool, "a"), "b": try Self.dump(pool, "b")]
        var made = 0
        for trial in 0..<Self.trials {
            // The command takes 20-30 ms here: most kills land inside it.
            let delay = Double.random(in: 0.0...0.03, using: &generator)
            let names = ["a\(trial)", "b\(trial)"]
            try Self.kill(after: delay, pool, ["snapshot", "create"] + names + ["--origin", "a", "--origin", "b",
                                              "--cow", pool.file("\(names[0]).cow"), "--cow", pool.file("\(names[1]).cow")])
            let registered = try names.map { try pool.snapshotStatus($0) != nil }
            #expect(registered[0] == registered[1], "trial \(trial): \(registered); seed \(generator.seed)")
            guard registered == [true, true] else { continue }
            made += 1
            for (name, origin) in zip(names, ["a", "b"]) {
                let check = try SnapvolBinary.run(["check", pool.file("\(name).cow"), "--origin-size", "4M"])
                #expect(check.status == 0, "trial \(trial): \(name).cow: \(check.text); seed \(generator.seed)")
                #expect(sameBytes(try Self.dump(pool, name), images[origin]!), "trial \(trial): \(name); seed \(generator.seed)")
                try pool.ok("snapshot", "delete", name)
            }
        }
        print("group creates killed: \(Self.trials), completed before the kill: \(made)")
    }

    /// An origin write killed at random instants while a snapshot's COW is away: when the COW is
    /// back, the snapshot is either intact (equal to its image, the origin not yet written) or
    /// given up (invalid); never active with the origin's newer data.
    @Test func aKilledWriteNeverLeavesAMissingSnapshotSilentlyWrong() throws {
        var generator = SeededGenerator.fromEnvironment()
        let pool = try TestPool.withOrigin("data", size: "4M", pattern: "1")
        var outcomes = (kept: 0, givenUp: 0)
        for trial in 0..<Self.trials {
            let name = "s\(trial)"
            try pool.ok("snapshot", "create", name, "--origin", "data", "--cow", pool.file("\(name).cow"), "--cow-size", "4M")
            let before = try Self.dump(pool, "data")
            try FileManager.default.moveItem(atPath: pool.file("\(name).cow"), toPath: pool.file("away.cow"))
            // Opening the pool takes most of the command's few tens of milliseconds.
            try Self.kill(after: Double.random(in: 0.0...0.06, using: &generator), pool,
                          ["io", "write", "data", "0", "1M", "--pattern", "\(trial % 250 + 2)"])
            try FileManager.default.moveItem(atPath: pool.file("away.cow"), toPath: pool.file("\(name).cow"))
            let written = try Self.dump(pool, "data") != before
            let state = try pool.snapshotStatus(name)?["state"] as? String
            if state == "active" {
                #expect(!written, "trial \(trial): the origin changed and \(name) is active; seed \(generator.seed)")
                #expect(sameBytes(try Self.dump(pool, name), before), "trial \(trial): \(name) differs; seed \(generator.seed)")
                outcomes.kept += 1
            } else {
                #expect(state == "invalid", "trial \(trial): \(name) is \(state ?? "gone"); seed \(generator.seed)")
                outcomes.givenUp += 1
            }
            try pool.ok("snapshot", "delete", name)
        }
        print("writes killed with a COW away: \(Self.trials); snapshot kept \(outcomes.kept), given up \(outcomes.givenUp)")
    }
}
