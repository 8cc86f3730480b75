import Foundation

/// Reads files of `/proc` (and `/sys`), whose size `stat` reports as 0 (or a page). Foundation's
/// `String(contentsOfFile:)` and `Data(contentsOf:)` then read one page (4,095 bytes) and stop: `/proc/locks` on a host
/// with about 75 locks or more (a few qemu processes with their image locks) was cut short,
/// and the holder of a pool's lock went unnamed.
public enum ProcFile {
    /// The whole file, read until its end; nil if it cannot be opened.
    public static func text(_ path: String) -> String? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        return String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
    }
}
