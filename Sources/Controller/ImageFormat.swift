import Foundation

/// Disk-image container formats a user may register as an origin by mistake (a VM's qcow2 file):
/// snapvol works on raw bytes, so its clients would then have to read the export in that format.
public enum ImageFormat {
    static let magics: [(format: String, bytes: [UInt8])] = [
        ("qcow2", [0x51, 0x46, 0x49, 0xFB]),                              // "QFI\xfb"
        ("vmdk", Array("KDMV".utf8)),
        ("vhdx", Array("vhdxfile".utf8)),
        ("vdi", Array("<<< ".utf8)),
    ]

    /// The container format whose magic `path` starts with, if any.
    public static func detect(at path: String) -> String? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        let head = [UInt8]((try? handle.read(upToCount: 8)) ?? Data())
        return magics.first { head.starts(with: $0.bytes) }?.format
    }
}
