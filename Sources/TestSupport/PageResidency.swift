#if canImport(Glibc)
import Glibc
#endif

/// Which pages of a file the page cache holds (`mincore(2)` on a shared read-only mapping),
/// for tests of what the engine leaves cached.
public enum PageResidency {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// How many of the pages of `[offset, offset+length)` of the file at `path` are resident.
    /// `offset` must be a multiple of the page size.
    public static func residentPages(path: String, offset: UInt64, length: Int) throws -> Int {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw Failure(description: "open \(path): errno \(errno)") }
        defer { close(fd) }
        guard let mapping = mmap(nil, length, PROT_READ, MAP_SHARED, fd, off_t(offset)), mapping != MAP_FAILED else {
            throw Failure(description: "mmap \(path): errno \(errno)")
        }
        defer { munmap(mapping, length) }
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        var vector = [UInt8](repeating: 0, count: (length + pageSize - 1) / pageSize)
        guard mincore(mapping, length, &vector) == 0 else { throw Failure(description: "mincore \(path): errno \(errno)") }
        return vector.reduce(0) { $0 + Int($1 & 1) }
    }

    /// Whether a page-cache test can run in `directory`, whose file system must drop clean
    /// pages when asked. Where it keeps them (tmpfs) the test is skipped, except in CI, where
    /// this throws: a missing prerequisite fails there (`Environment`'s rule).
    public static func canTestResidency(in directory: String) throws -> Bool {
        if try fileSystemDropsPages(in: directory) { return true }
        if Environment.isCI { throw Failure(description: "the test directory's file system keeps clean pages: \(directory)") }
        return false
    }

    /// Whether this file system drops clean pages when asked (`posix_fadvise(DONTNEED)`):
    /// tmpfs, for one, keeps them. Tried on a fresh file in `directory`.
    public static func fileSystemDropsPages(in directory: String) throws -> Bool {
        let path = "\(directory)/residency-probe"
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { throw Failure(description: "open \(path): errno \(errno)") }
        defer { close(fd); unlink(path) }
        let bytes = [UInt8](repeating: 0x5A, count: 65536)
        guard pwrite(fd, bytes, bytes.count, 0) == bytes.count, fdatasync(fd) == 0 else {
            throw Failure(description: "write \(path): errno \(errno)")
        }
        _ = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
        return try residentPages(path: path, offset: 0, length: bytes.count) == 0
    }
}
