#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// Names the process holding a lock on a file, from `/proc`, for a refusal to say who is in
/// the way ("process 4242 (qemu-system-x86_64 -drive file=vm.img)").
public enum LockHolder {
    /// "process PID (its command line)", or "process PID" when the command line cannot be read.
    public static func describe(pid: String) -> String {
        let command = ProcFile.text("/proc/\(pid)/cmdline")?
            .split(separator: "\0").joined(separator: " ")
        return "process \(pid)" + (command.map { $0.isEmpty ? "" : " (\($0))" } ?? "")
    }

    /// The process holding an `flock` on the file with inode `inode` (the FLOCK lines of
    /// `/proc/locks` carry the pid).
    public static func flockHolder(inode: UInt64) -> String? {
        guard let locks = ProcFile.text("/proc/locks") else { return nil }
        for line in locks.split(separator: "\n") where line.contains("FLOCK") {
            let fields = line.split(separator: " ")
            guard let id = fields.first(where: { $0.split(separator: ":").count == 3 }),
                  id.split(separator: ":").last.map(String.init) == "\(inode)",
                  let pidIndex = fields.firstIndex(where: { $0 == "WRITE" || $0 == "READ" }).map({ $0 + 1 }),
                  pidIndex < fields.count else { continue }
            return describe(pid: String(fields[pidIndex]))
        }
        return nil
    }

    /// A process other than this one with an open-file-description lock on the file `device`
    /// and `inode` (OFD locks show pid -1 in `/proc/locks`; each holder's `fdinfo` lists them).
    public static func ofdHolder(device: UInt64, inode: UInt64) -> String? {
        let file = String(format: "%02x:%02x:%llu", Self.major(device), Self.minor(device), inode)
        let me = "\(getpid())"
        guard let pids = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return nil }
        for pid in pids where pid != me && pid.allSatisfy(\.isNumber) {
            guard let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fdinfo") else { continue }
            for fd in fds {
                guard let info = ProcFile.text("/proc/\(pid)/fdinfo/\(fd)") else { continue }
                if info.split(separator: "\n").contains(where: { $0.hasPrefix("lock:") && $0.contains("OFDLCK") && $0.contains(" \(file) ") }) {
                    return describe(pid: pid)
                }
            }
        }
        return nil
    }

    // The encoding of gnu_dev_major/gnu_dev_minor.
    private static func major(_ device: UInt64) -> UInt64 { ((device >> 8) & 0xfff) | ((device >> 32) & ~UInt64(0xfff)) }
    private static func minor(_ device: UInt64) -> UInt64 { (device & 0xff) | ((device >> 12) & ~UInt64(0xff)) }
}
