import Foundation
import Testing
import TestSupport

/// Hostile pool registries: every mutation of a valid registry file is either loaded or refused
/// with one line naming the file, exit 1, never a crash (exit by signal).
@Suite(.mayBlock) struct RegistryFuzzTests {
    @Test func mutatedRegistriesAreRefusedCleanly() throws {
        var generator = SeededGenerator.fromEnvironment()
        let pool = try TestPool()
        try pool.ok("pool", "init")
        try pool.ok("origin", "add", "data", "--path", pool.file("data.img"), "--size", "1M")
        try pool.ok("snapshot", "create", "snap", "--origin", "data", "--cow", pool.file("snap.cow"))
        let path = "\(pool.path)/registry.json"
        let pristine = [UInt8](FileManager.default.contents(atPath: path)!)
        for run in 0..<40 {
            var bytes = pristine
            for _ in 0..<Int.random(in: 1...4, using: &generator) {
                let at = Int.random(in: 0..<bytes.count, using: &generator)
                if Bool.random(using: &generator) { bytes[at] = UInt8.random(in: 0...255, using: &generator) } else { bytes.remove(at: at) }
            }
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            let result = try pool.run("status", "--json")
            #expect(result.status == 0 || result.status == 1, "run \(run): exit \(result.status); seed \(generator.seed)")
            if result.status == 1 {
                #expect(result.stderr.split(separator: "\n").count == 1 && result.stderr.contains("registry.json"),
                        "run \(run): \(result.stderr); seed \(generator.seed)")
            }
        }
    }

    @Test func poolFilesArePrivate() throws {
        let pool = try TestPool()
        try pool.ok("pool", "init")
        try pool.ok("origin", "add", "data", "--path", pool.file("data.img"), "--size", "1M")
        let server = try ServeProcess(pool: pool)
        defer { server.stop() }
        func mode(_ path: String) -> Int { ((try? FileManager.default.attributesOfItem(atPath: path))?[.posixPermissions] as? Int) ?? -1 }
        #expect(mode(pool.path) == 0o700)
        #expect(mode("\(pool.path)/registry.json") == 0o600)
        #expect(mode("\(pool.path)/pool.lock") == 0o600)
        #expect(mode("\(pool.path)/control.sock") == 0o600)
        #expect(mode("\(pool.path)/nbd.sock") == 0o600)
        #expect(mode(pool.file("data.img")) == 0o600)
    }
}
