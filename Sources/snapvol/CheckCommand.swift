import ArgumentParser
import Controller
import Foundation

struct CheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check any persistent COW device offline (kernel-made too). Exit 0 clean, 1 inconsistent, 2 unreadable.")
    @Argument(help: "The COW file or block device.") var cowPath: String
    @Option(help: "The origin's size, to check records against it.") var originSize: String?
    @Flag(help: "Print the report as JSON.") var json = false

    func run() async throws {
        var size: UInt64?
        try await guarded { size = try bytes(originSize) }
        let report = await CowCheckReport.run(path: absolutePath(cowPath), originSize: size)
        if json {
            try printJSON(report)
        } else {
            emit(Self.text(report))
        }
        if report.exitCode != 0 { throw ExitCode(report.exitCode) }
    }

    static func text(_ report: CowCheckReport) -> String {
        var lines = ["\(report.path): \(report.verdict.rawValue)"]
        func add(_ label: String, _ value: Any?) { if let value { lines.append("  \(label): \(value)") } }
        add("magic", report.magic)
        add("valid", report.valid)
        add("version", report.version)
        add("chunk size", report.chunkSize.map { ByteSize.describe(UInt64($0)) })
        add("device size", report.deviceBytes.map { ByteSize.describe($0) })
        add("exceptions", report.exceptions)
        add("metadata areas", report.areas)
        add("next free chunk", report.nextFreeChunk)
        add("fill", report.fillPercent.map { String(format: "%.2f%%", $0) })
        add("dm status", report.dmStatus)
        add("problem", report.problem)
        return lines.joined(separator: "\n")
    }
}
