import ExceptionMachinery
import Foundation
import SystemPackage

/// Deletes a COW or spare-area file that snapvol created, but only while the path still holds
/// that store: a regular file (not a directory, device or link) starting with a store header of
/// the volume's chunk size. Whatever else now stands at the path (the user's file put in place of
/// a COW moved away, a directory, another chunk size's store) is kept.
///
/// Invariant: never deletes anything but a regular file that is an exception store of
/// `chunkBytes` chunks; a path already gone is no error.
enum StoreFileRemoval {
    /// Deletes `path` if it is still the store; otherwise returns why it was kept (nil when it
    /// was deleted or was already gone).
    static func remove(_ path: String, chunkBytes: Int) -> String? {
        guard let reason = reasonToKeep(path, chunkBytes: chunkBytes) else {
            do {
                try FileManager.default.removeItem(atPath: path)
                return nil
            } catch {
                return "it could not be deleted (\(Controller.systemReason(error)))"
            }
        }
        return reason.isEmpty ? nil : reason
    }

    /// Why the path must be kept; "" when nothing is there, nil when it is the store.
    private static func reasonToKeep(_ path: String, chunkBytes: Int) -> String? {
        var info = stat()
        guard lstat(path, &info) == 0 else { return "" }
        guard info.st_mode & S_IFMT == S_IFREG else { return "it is no longer a regular file" }
        guard let handle = FileHandle(forReadingAtPath: path) else { return "it cannot be read" }
        defer { try? handle.close() }
        let bytes = [UInt8]((try? handle.read(upToCount: 16)) ?? Data())
        guard bytes.count == 16, bytes.starts(with: CowLayout.magicBytes) else { return "it no longer holds a COW store" }
        let chunkSectors = CowHeader(decoding: bytes).chunkSectors
        guard Int(chunkSectors) * 512 == chunkBytes else {
            return "it holds a store of \(ByteCount.describe(UInt64(chunkSectors) * 512)) chunks, not \(ByteCount.describe(UInt64(chunkBytes)))"
        }
        return nil
    }
}
