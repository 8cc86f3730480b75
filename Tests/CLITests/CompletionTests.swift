import Foundation
import Testing
import TestSupport

/// Tab completion of volume names, through the bash script `--generate-completion-script`
/// writes, run by a real bash: each argument offers the names of its kind from the pool the
/// command line names.
@Suite(.mayBlock, .enabled(if: Environment.canRun(commands: ["bash"])))
struct CompletionTests {
    /// What bash offers for `line` (the last word being completed).
    static func complete(_ line: String, script: String) throws -> [String] {
        let words = line.split(separator: " ", omittingEmptySubsequences: false).map { "'\($0)'" }.joined(separator: " ")
        let program = """
            source '\(script)'
            COMP_WORDS=(\(words)); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
            COMP_LINE='\(line)'; COMP_POINT=${#COMP_LINE}
            _snapvol snapvol "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"   # as bash calls it: command, word, previous word
            printf '%s\\n' "${COMPREPLY[@]}"
            """
        let directory = URL(fileURLWithPath: SnapvolBinary.path).deletingLastPathComponent().path
        let environment = ["PATH": "\(directory):/usr/bin:/bin", "HOME": NSTemporaryDirectory()]
        let result = try Shell.run(["bash", "-c", program], environment: environment)
        return result.text.split(separator: "\n").map(String.init).sorted()
    }

    @Test func volumeArgumentsOfferTheNamesOfTheirKind() throws {
        let pool = try TestPool.withOrigin("vm", size: "4M")
        try pool.ok("origin", "add", "db", "--path", pool.file("db.img"), "--size", "1M")
        for name in ["nightly", "weekly"] {
            try pool.ok("snapshot", "create", name, "--origin", "vm", "--cow", pool.file("\(name).cow"))
        }
        let script = pool.file("snapvol.bash")
        try SnapvolBinary.run(["--generate-completion-script", "bash"]).stdout.write(to: URL(fileURLWithPath: script))
        let at = "--pool \(pool.path)"
        #expect(try Self.complete("snapvol snapshot delete \(at) ", script: script) == ["nightly", "weekly"])
        #expect(try Self.complete("snapvol snapshot merge \(at) w", script: script) == ["weekly"])
        #expect(try Self.complete("snapvol origin remove \(at) ", script: script) == ["db", "vm"])
        #expect(try Self.complete("snapvol status --pool=\(pool.path) ", script: script) == ["db", "nightly", "vm", "weekly"])
        #expect(try Self.complete("snapvol snapshot create new \(at) --origin ", script: script) == ["db", "vm"])
        #expect(try Self.complete("snapvol io read \(at) n", script: script) == ["nightly"])
        #expect(try Self.complete("snapvol snapshot delete --pool \(pool.file("nowhere")) ", script: script).isEmpty, "no pool, no names")
    }
}
