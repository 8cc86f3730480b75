import BlockDevices
import Foundation

/// Bytes this process has passed to `read`/`pread` and `write`/`pwrite` calls, page-cache hits
/// included (Linux `/proc/self/io`: `rchar`, `wchar`, summed over every thread of the process).
/// The difference of two readings around a case says how many bytes the engine moved to and
/// from its devices per byte the client wrote, whatever the disk and the page cache did.
///
/// Invariant: both counts only grow; a reading is nil where `/proc/self/io` does not exist.
struct ProcessIO {
    var readBytes: UInt64
    var writtenBytes: UInt64

    static func current() -> ProcessIO? {
        guard let text = ProcFile.text("/proc/self/io") else { return nil }
        var fields: [Substring: UInt64] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2, let value = UInt64(parts[1].trimmingCharacters(in: .whitespaces)) { fields[parts[0]] = value }
        }
        guard let read = fields["rchar"], let written = fields["wchar"] else { return nil }
        return ProcessIO(readBytes: read, writtenBytes: written)
    }

    /// Runs `body`; returns its result and the bytes read and written meanwhile (nil if unknown).
    static func measuring<T>(_ body: () async throws -> T) async rethrows -> (T, ProcessIO?) {
        let before = current()
        let result = try await body()
        guard let before, let after = current() else { return (result, nil) }
        return (result, ProcessIO(readBytes: after.readBytes - before.readBytes,
                                  writtenBytes: after.writtenBytes - before.writtenBytes))
    }
}
