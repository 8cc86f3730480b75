import Foundation

/// One COW device written by the real Linux kernel (from shared/fixtures/kernel-cow, copied into
/// the test resources): its origin, COW and expected snapshot images, and the kernel's figures.
public struct KernelFixture: Sendable {
    public let name: String
    public let directory: String
    public let chunkSectors: UInt32
    public let originBytes: Int
    public let cowBytes: Int
    /// The kernel's `dmsetup status` line, e.g. `0 16384 snapshot 2944/8192 256`.
    public let kernelStatus: String

    public static let names = ["c16-fresh", "c8-two-areas", "c128-mixed", "c16-invalid"]

    public init(name: String, in root: String) throws {
        self.name = name
        directory = "\(root)/\(name)"
        let text = try String(contentsOfFile: "\(directory)/case.txt", encoding: .utf8)
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            fields[String(line[..<eq])] = String(line[line.index(after: eq)...])
        }
        chunkSectors = UInt32(fields["chunk_sectors"]!)!
        originBytes = Int(fields["origin_bytes"]!)!
        cowBytes = Int(fields["cow_bytes"]!)!
        kernelStatus = fields["kernel_status"]!
    }

    public var isInvalid: Bool { kernelStatus.hasSuffix("Invalid") }

    /// Decompresses `<image>.img.gz` (origin, cow or snapshot).
    public func image(_ image: String) throws -> [UInt8] {
        let result = try Shell.check(["gzip", "-dc", "\(directory)/\(image).img.gz"])
        return [UInt8](result.stdout)
    }

    /// Decompresses `<image>.img.gz` into a file at `path`.
    public func extract(_ image: String, to path: String) throws {
        try Data(try self.image(image)).write(to: URL(fileURLWithPath: path))
    }
}

extension KernelFixture {
    /// Where the fixtures were bundled.
    public static var root: String { Bundle.module.resourcePath! + "/Fixtures/kernel-cow" }

    public static func load(_ name: String) throws -> KernelFixture { try KernelFixture(name: name, in: root) }
}
