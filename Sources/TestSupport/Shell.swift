import Foundation

/// Runs external programs for tests (losetup, gzip, the snapvol binary).
public enum Shell {
    public struct Result: Sendable {
        public let status: Int32
        public let stdout: Data
        public let stderr: String
        public var text: String { String(decoding: stdout, as: UTF8.self) }
    }

    public struct Failure: Error, CustomStringConvertible {
        public let command: String
        public let result: Result
        public var description: String { "`\(command)` exited \(result.status): \(result.stderr)" }
    }

    /// Runs `arguments[0]` (looked up on PATH) with the rest as arguments.
    @discardableResult
    public static func run(_ arguments: [String], input: Data? = nil, environment: [String: String]? = nil) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        if let environment {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        let out = Pipe(), err = Pipe(), inp = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = inp
        try process.run()
        if let input { inp.fileHandleForWriting.write(input) }
        try inp.fileHandleForWriting.close()
        let (stdoutData, stderrData) = readBoth(out, err)
        process.waitUntilExit()
        return Result(status: process.terminationStatus, stdout: stdoutData, stderr: String(decoding: stderrData, as: UTF8.self))
    }

    /// Runs and throws unless the exit status is 0.
    @discardableResult
    public static func check(_ arguments: [String], input: Data? = nil) throws -> Result {
        let result = try run(arguments, input: input)
        guard result.status == 0 else { throw Failure(command: arguments.joined(separator: " "), result: result) }
        return result
    }

    /// Drains both pipes at once, so a child filling one while we wait on the other cannot deadlock.
    private static func readBoth(_ out: Pipe, _ err: Pipe) -> (Data, Data) {
        let outBox = DataBox(), errBox = DataBox()
        let group = DispatchGroup()
        for (pipe, box) in [(out, outBox), (err, errBox)] {
            group.enter()
            DispatchQueue.global().async {
                box.data = pipe.fileHandleForReading.readDataToEndOfFile()
                group.leave()
            }
        }
        group.wait()
        return (outBox.data, errBox.data)
    }
}

// @unchecked Sendable: written once by the reader thread before `group.leave()`, read after `group.wait()`.
private final class DataBox: @unchecked Sendable {
    var data = Data()
}
