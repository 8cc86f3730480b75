import CSnapvolSys
#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import SystemPackage

/// A device over a regular file or a raw block device, using `pread`/`pwrite`/`fdatasync`.
///
/// Invariants: block devices are opened `O_EXCL`, so one that is mounted or held by another
/// opener is refused; the descriptor stays open for the object's lifetime and is closed once,
/// in `deinit`; `size` is the file's size (updated by `resize`) or the device's `BLKGETSIZE64`.
public final class FileBlockDevice: ResizableDevice {
    /// What kind of object the path named.
    public enum Kind: Sendable { case regularFile, blockDevice }

    public let name: String
    public let kind: Kind
    public let alignment: Int
    public let isReadOnly: Bool
    /// The logical sector size of a block device (512 for a regular file): a block device
    /// deallocates whole sectors only.
    public let sectorBytes: Int
    let descriptor: FileDescriptor
    private let currentSize: Atomic<UInt64>

    public var size: UInt64 { currentSize.load(ordering: .acquiring) }

    private init(name: String, kind: Kind, descriptor: FileDescriptor, size: UInt64, sector: Int = 512, alignment: Int,
                 readOnly: Bool) {
        self.name = name
        self.sectorBytes = sector
        self.kind = kind
        self.descriptor = descriptor
        self.currentSize = Atomic(size)
        self.alignment = alignment
        self.isReadOnly = readOnly
    }

    deinit { try? descriptor.close() }

    /// Opens an existing regular file or block device.
    /// - Parameters:
    ///   - readOnly: open `O_RDONLY`; writes then throw `readOnly`.
    ///   - direct: open with `O_DIRECT`; callers must then use aligned offsets, lengths and buffers.
    public static func open(path: String, readOnly: Bool = false, direct: Bool = false) throws -> FileBlockDevice {
        let kind = try classify(path: path)
        var options: FileDescriptor.OpenOptions = [.closeOnExec]
        if kind == .blockDevice && !readOnly { options.insert(.exclusiveCreate) }
        if direct { options.insert(FileDescriptor.OpenOptions(rawValue: snapvol_o_direct())) }
        let fd = try system("open", path) {
            try FileDescriptor.open(FilePath(path), readOnly ? .readOnly : .readWrite, options: options)
        }
        do {
            let (size, sector) = try measure(fd, kind: kind, path: path)
            return FileBlockDevice(name: path, kind: kind, descriptor: fd, size: size, sector: sector,
                                   alignment: direct ? max(sector, 512) : 1, readOnly: readOnly)
        } catch {
            try? fd.close()
            throw error
        }
    }

    /// Measures the file or device again and takes that as its size (a file truncated by
    /// someone else, a block device grown by `lvextend`); returns it.
    @discardableResult
    public func remeasure() throws -> UInt64 {
        let size = try measuredSize()
        currentSize.store(size, ordering: .releasing)
        return size
    }

    /// The file's or device's size now, measured again (`size` stays as it was).
    public func measuredSize() throws -> UInt64 { try Self.measure(descriptor, kind: kind, path: name).size }

    /// Creates a new sparse regular file of `size` bytes; refuses an existing path.
    public static func create(path: String, size: UInt64, permissions: FilePermissions = [.ownerReadWrite]) throws -> FileBlockDevice {
        let fd = try system("create", path) {
            try FileDescriptor.open(FilePath(path), .readWrite, options: [.create, .exclusiveCreate, .closeOnExec],
                                    permissions: permissions)
        }
        do {
            try system("ftruncate", path) { try fd.resize(to: Int64(size)) }
        } catch {
            try? fd.close()
            throw error
        }
        return FileBlockDevice(name: path, kind: .regularFile, descriptor: fd, size: size, alignment: 1, readOnly: false)
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) async throws {
        _ = try readImmediately(into: buffer, at: offset)
    }

    /// `pread` never suspends the caller's task: it blocks its thread, as `read` does.
    public func readImmediately(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Bool {
        try checkRange(offset: offset, length: buffer.count)
        try checkAlignment(offset: offset, buffer: UnsafeRawBufferPointer(buffer))
        var done = 0
        while done < buffer.count {
            let piece = UnsafeMutableRawBufferPointer(rebasing: buffer[done...])
            let n = try system("read", name) {
                try descriptor.read(fromAbsoluteOffset: Int64(offset) + Int64(done), into: piece)
            }
            if n == 0 { throw DeviceError.unexpectedEnd(device: name, offset: offset + UInt64(done)) }
            done += n
        }
        return true
    }

    public func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) async throws {
        _ = try writeImmediately(buffer, at: offset)
    }

    /// `pwrite` never suspends the caller's task: it blocks its thread, as `write` does.
    public func writeImmediately(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws -> Bool {
        if isReadOnly { throw DeviceError.readOnly(device: name) }
        try checkRange(offset: offset, length: buffer.count)
        try checkAlignment(offset: offset, buffer: buffer)
        var done = 0
        while done < buffer.count {
            let piece = UnsafeRawBufferPointer(rebasing: buffer[done...])
            let n = try system("write", name) {
                try descriptor.write(toAbsoluteOffset: Int64(offset) + Int64(done), piece)
            }
            if n == 0 { throw DeviceError.system(operation: "write", device: name, errno: .noSpace) }
            done += n
        }
        return true
    }

    public func flush() async throws {
        if isReadOnly { return }
        let descriptor = descriptor.rawValue
        let result = try await BlockingCalls.run { snapvol_fdatasync(descriptor) }
        if result != 0 { throw DeviceError.system(operation: "fdatasync", device: name, errno: Errno(rawValue: result)) }
    }

    /// Ranges shorter than this are left to the next flush: starting a 4 KiB write early gains
    /// nothing and costs a system call and a disk request of its own (measured over NBD: random
    /// 4K first writes 6,547 / 5,323 IOPS when every queued write was started, 7,716 / 6,470
    /// when small ones were left).
    public static let shortestEarlyWriteback = 64 << 10

    /// `sync_file_range(SYNC_FILE_RANGE_WRITE)`: the writeback starts, nothing waits for it.
    public func startWriteback(offset: UInt64, length: Int) {
        guard !isReadOnly, length >= Self.shortestEarlyWriteback else { return }
        _ = snapvol_start_writeback(descriptor.rawValue, offset, UInt64(length))
    }

    /// `posix_fadvise(DONTNEED)`: clean pages of the range leave the page cache; dirty ones
    /// only start their writeback and stay.
    public func releaseCachedPages(offset: UInt64, length: Int) {
        guard length > 0 else { return }
        _ = advise(POSIX_FADV_DONTNEED, offset: offset, length: length)
    }

    /// Prefetches are asked for in pieces of this size: one `posix_fadvise(WILLNEED)` reads at
    /// most the device's read-ahead window (`read_ahead_kb`; a 32 MiB call read 2,047 of its
    /// 8,192 pages here), so 4 KiB reads of such a range, last to first, took 583 ms after one
    /// call and 10-14 ms after 1 MiB pieces (Linux 6.18).
    public static let prefetchPiece = 1 << 20

    /// `posix_fadvise(WILLNEED)`, piece by piece: the kernel reads the range ahead in large
    /// requests instead of page by page as the reads come (backwards, in a merge).
    public func prefetch(offset: UInt64, length: Int) {
        var done = 0
        while done < length {
            let piece = min(Self.prefetchPiece, length - done)
            _ = advise(POSIX_FADV_WILLNEED, offset: offset + UInt64(done), length: piece)
            done += piece
        }
    }

    /// A regular file's data and holes, from `lseek(SEEK_DATA)` and `lseek(SEEK_HOLE)`; a block
    /// device reports all of `range` as data.
    public func dataExtents(in range: Range<UInt64>) throws -> [Range<UInt64>] {
        guard kind == .regularFile, !range.isEmpty else { return range.isEmpty ? [] : [range] }
        var extents: [Range<UInt64>] = []
        var cursor = range.lowerBound
        while cursor < range.upperBound, let start = try seek(Self.nextData, from: cursor), start < range.upperBound {
            let end = min(try seek(Self.nextHole, from: start) ?? range.upperBound, range.upperBound)
            extents.append(start..<end)
            cursor = end
        }
        return extents
    }

    /// `fallocate(PUNCH_HOLE | KEEP_SIZE)`. A regular file gets a hole (blocks the range only
    /// partly covers are zeroed in place). A block device zeroes whole sectors by discarding
    /// them, never by writing zeros (the kernel's `BLKDEV_ZERO_NOFALLBACK`); a range not aligned
    /// to its sectors, or a device or file system without support, answers false.
    public func deallocate(_ range: Range<UInt64>) async throws -> Bool {
        if isReadOnly { throw DeviceError.readOnly(device: name) }
        try checkRange(offset: range.lowerBound, length: range.count)
        if range.isEmpty { return true }
        if kind == .blockDevice && (range.lowerBound | range.upperBound) % UInt64(sectorBytes) != 0 { return false }
        let descriptor = descriptor.rawValue
        let result = try await BlockingCalls.run {
            snapvol_punch_hole(descriptor, range.lowerBound, range.upperBound - range.lowerBound)
        }
        switch Errno(rawValue: result) {
        case Errno(rawValue: 0): return true
        case .notSupported, .notSupportedOnSocket: return false
        case let errno: throw DeviceError.system(operation: "fallocate(PUNCH_HOLE)", device: name, errno: errno)
        }
    }

    private static let nextData = FileDescriptor.SeekOrigin(rawValue: snapvol_seek_data())
    private static let nextHole = FileDescriptor.SeekOrigin(rawValue: snapvol_seek_hole())

    /// `lseek` to the next data or hole at or after `offset`; nil where the file has no more
    /// data (`ENXIO`), or past its end.
    private func seek(_ whence: FileDescriptor.SeekOrigin, from offset: UInt64) throws -> UInt64? {
        guard offset < size else { return nil }
        do {
            return UInt64(try descriptor.seek(offset: Int64(offset), from: whence))
        } catch Errno.noSuchAddressOrDevice {
            return nil
        } catch let errno as Errno {
            throw DeviceError.system(operation: "lseek", device: name, errno: errno)
        }
    }

    /// Writes back and then drops this file's pages from the page cache (posix_fadvise
    /// DONTNEED), so the next reads come from the device: for measurements of cold reads.
    public func dropCachedPages() async throws {
        try await flush()
        let result = advise(POSIX_FADV_DONTNEED, offset: 0, length: 0)
        if result != 0 { throw DeviceError.system(operation: "posix_fadvise", device: name, errno: Errno(rawValue: result)) }
    }

    /// `posix_fadvise` over `[offset, offset+length)` (to the end of the file when `length` is
    /// 0); returns its error number, 0 on success.
    private func advise(_ advice: Int32, offset: UInt64, length: Int) -> Int32 {
        posix_fadvise(descriptor.rawValue, off_t(offset), off_t(length), advice)
    }

    /// Grows or shrinks a regular file. Block devices cannot be resized here.
    public func resize(to newSize: UInt64) async throws {
        try await resize(to: newSize, reserve: false)
    }

    /// Grows or shrinks a regular file; with `reserve`, the grown part is allocated on the file
    /// system (`posix_fallocate`), so a full file system fails here with ENOSPC instead of at a
    /// later write (the file is put back to its old size then).
    public func resize(to newSize: UInt64, reserve: Bool) async throws {
        guard kind == .regularFile, !isReadOnly else {
            throw DeviceError.system(operation: "resize", device: name, errno: .notSupported)
        }
        let oldSize = size
        if reserve && newSize > oldSize {
            let result = posix_fallocate(descriptor.rawValue, off_t(oldSize), off_t(newSize - oldSize))
            if result != 0 {
                _ = try? descriptor.resize(to: Int64(oldSize))
                throw DeviceError.system(operation: "fallocate", device: name, errno: Errno(rawValue: result))
            }
        }
        try FileBlockDevice.system("ftruncate", name) { try descriptor.resize(to: Int64(newSize)) }
        currentSize.store(newSize, ordering: .releasing)
    }

    private func checkAlignment(offset: UInt64, buffer: UnsafeRawBufferPointer) throws {
        guard alignment > 1 else { return }
        let address = Int(bitPattern: buffer.baseAddress)
        if offset % UInt64(alignment) != 0 || buffer.count % alignment != 0 || address % alignment != 0 {
            throw DeviceError.misaligned(device: name, offset: offset, length: buffer.count, alignment: alignment)
        }
    }

    private func system<T>(_ operation: String, _ path: String, _ body: () throws -> T) throws -> T {
        try FileBlockDevice.system(operation, path, body)
    }

    /// Runs a swift-system call, turning its `Errno` into a `DeviceError` naming the device.
    static func system<T>(_ operation: String, _ path: String, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let errno as Errno {
            throw DeviceError.system(operation: operation, device: path, errno: errno)
        }
    }

    private static func classify(path: String) throws -> Kind {
        let info = try system("stat", path) { try FilePath(path).stat() }
        switch info.type {
        case .regular: return .regularFile
        case .blockSpecial: return .blockDevice
        default: throw DeviceError.notADevice(device: path)
        }
    }

    private static func measure(_ fd: FileDescriptor, kind: Kind, path: String) throws -> (size: UInt64, sector: Int) {
        switch kind {
        case .regularFile:
            let info = try system("fstat", path) { try fd.stat() }
            return (UInt64(info.size), 512)
        case .blockDevice:
            var size: UInt64 = 0
            var sector: Int32 = 512
            let r = snapvol_block_device_size(fd.rawValue, &size)
            if r != 0 { throw DeviceError.system(operation: "ioctl(BLKGETSIZE64)", device: path, errno: Errno(rawValue: r)) }
            _ = snapvol_block_device_sector_size(fd.rawValue, &sector)
            return (size, Int(sector))
        }
    }
}
