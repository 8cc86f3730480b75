#if canImport(Glibc)
import Glibc
#endif

/// Environment access and the rule for prerequisites: tests that need root, loop devices,
/// tmux or NBD clients may skip on a laptop, but never in CI (`CI=true`): there a missing
/// prerequisite must fail the test, so the test is enabled and its setup fails loudly.
public enum Environment {
    public static func value(_ name: String) -> String? {
        guard let raw = getenv(name) else { return nil }
        return String(cString: raw)
    }

    public static var isCI: Bool { value("CI") == "true" }

    public static var isRoot: Bool { geteuid() == 0 }

    /// Whether an executable is on PATH.
    public static func hasCommand(_ name: String) -> Bool {
        let path = value("PATH") ?? "/usr/bin:/bin"
        return path.split(separator: ":").contains { access("\($0)/\(name)", X_OK) == 0 }
    }

    /// Whether a test needing `commands` (and root if asked) should run: always in CI.
    public static func canRun(needsRoot: Bool = false, commands: [String] = []) -> Bool {
        if isCI { return true }
        if needsRoot && !isRoot { return false }
        return commands.allSatisfy(hasCommand)
    }
}
