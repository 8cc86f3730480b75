import BlockDevices
import ExceptionMachinery
import Foundation

/// The offline check of a persistent COW device (`snapvol check`): header fields, exception
/// count, areas, fill, and the first inconsistency found. Opens the device read-only.
public struct CowCheckReport: Codable, Sendable {
    /// The outcome, as the exit status reports it: clean 0, inconsistent 1, unreadable 2.
    public enum Verdict: String, Codable, Sendable { case clean, inconsistent, unreadable }

    public var path: String
    public var verdict: Verdict
    public var problem: String?
    public var magic: String?
    public var valid: Bool?
    public var version: UInt32?
    public var chunkSize: Int?
    public var deviceBytes: UInt64?
    public var exceptions: Int?
    public var areas: Int?
    public var currentArea: UInt64?
    public var nextFreeChunk: UInt64?
    public var usedBytes: UInt64?
    public var fillPercent: Double?
    public var dmStatus: String?

    enum CodingKeys: String, CodingKey {
        case path, verdict, problem, magic, valid, version, exceptions, areas
        case chunkSize = "chunk_size", deviceBytes = "device_bytes", currentArea = "current_area"
        case nextFreeChunk = "next_free_chunk", usedBytes = "used_bytes", fillPercent = "fill_percent", dmStatus = "dm_status"
    }

    /// 0 clean, 1 inconsistent, 2 unreadable.
    public var exitCode: Int32 {
        switch verdict {
        case .clean: return 0
        case .inconsistent: return 1
        case .unreadable: return 2
        }
    }

    public static func run(path: String, originSize: UInt64?) async -> CowCheckReport {
        var report = CowCheckReport(path: path, verdict: .clean)
        let device: FileBlockDevice
        do {
            device = try FileBlockDevice.open(path: path, readOnly: true)
        } catch {
            report.verdict = .unreadable
            report.problem = "\(error)"
            return report
        }
        report.deviceBytes = device.size
        if device.size >= 16, let header = try? await device.readBytes(at: 0, count: 16) {
            let decoded = CowHeader(decoding: header)
            report.magic = "0x" + String(decoded.magic, radix: 16)
            report.valid = decoded.valid == 1
            report.version = decoded.version
            report.chunkSize = Int(decoded.chunkSectors) * sectorBytes
        }
        do {
            let originChunks = originSize.map { size in report.chunkSize.map { (size + UInt64($0) - 1) / UInt64($0) } ?? 0 }
            let scan = try await CowScanner.scan(device, originChunks: originChunks)
            report.exceptions = scan.exceptionCount
            report.areas = scan.areasRead
            report.currentArea = scan.currentArea
            report.nextFreeChunk = scan.nextFree
            let usage = scan.usage(deviceBytes: device.size)
            report.usedBytes = usage.allocatedSectors * UInt64(sectorBytes)
            report.fillPercent = scan.state == .invalid ? 100 : (usage.dataPercent * 100).rounded() / 100
            report.dmStatus = scan.state == .invalid ? "Invalid" : usage.dmStatus
            if scan.header.magic == 0 {
                let held = (try? await ForeignContent.found(on: device)).flatMap { $0 }.map { ", destroying what it holds: \($0)" } ?? ""
                report.problem = "no store yet (magic 0): the kernel would initialise it\(held)"
            }
            if scan.state == .invalid { report.problem = "the snapshot was invalidated (header valid = 0)" }
        } catch let error as CowFormatError {
            report.verdict = .inconsistent
            report.problem = error.description
        } catch {
            report.verdict = .unreadable
            report.problem = "\(error)"
        }
        return report
    }
}
