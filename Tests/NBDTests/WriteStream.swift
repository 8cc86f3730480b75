import Foundation
import TestSupport

/// A client's stream of writes to one volume, issued one at a time, and the images its prefixes
/// leave.
struct WriteStream {
    /// `byte` 0 is a WRITE_ZEROES request.
    struct Write {
        let offset: Int, length: Int, byte: UInt8
    }

    let writes: [Write]

    /// `count` writes of 512 bytes to 32 KiB at sector offsets in a volume of `size` bytes, half
    /// of them in its first 256 KiB, so that writes queued for their copies overlap; one in ten
    /// writes zeroes.
    init(count: Int, size: Int, using generator: inout SeededGenerator) {
        writes = (0..<count).map { _ in
            let length = Int.random(in: 1...64, using: &generator) * 512
            let span = Bool.random(using: &generator) ? 256 << 10 : size
            let offset = Int.random(in: 0...(span - length) / 512, using: &generator) * 512
            let byte: UInt8 = Int.random(in: 0..<10, using: &generator) == 0 ? 0 : UInt8.random(in: 1...255, using: &generator)
            return Write(offset: offset, length: length, byte: byte)
        }
    }

    /// The stream as qemu-io commands, ending with a flush.
    var commands: [String] {
        writes.map { $0.byte == 0 ? "write -z \($0.offset) \($0.length)" : "write -P \($0.byte) \($0.offset) \($0.length)" } + ["flush"]
    }

    /// Every k up to `longest` for which the volume (zeroes at first), after the stream's first
    /// k writes, equals `image`, ascending. Keeps a count of the bytes that differ, updated over
    /// each write's range only.
    func prefixes(of image: [UInt8], upTo longest: Int = .max) -> [Int] {
        var model = [UInt8](repeating: 0, count: image.count)
        return model.withUnsafeMutableBufferPointer { model in
            image.withUnsafeBufferPointer { image in
                var differing = 0
                for index in 0..<model.count where model[index] != image[index] { differing += 1 }
                var matches = differing == 0 ? [0] : []
                for (index, write) in writes.prefix(longest).enumerated() {
                    for byteIndex in write.offset..<write.offset + write.length {
                        let wanted = image[byteIndex]
                        if model[byteIndex] != wanted { differing -= 1 }
                        model[byteIndex] = write.byte
                        if write.byte != wanted { differing += 1 }
                    }
                    if differing == 0 { matches.append(index + 1) }
                }
                return matches
            }
        }
    }
}

extension WriteStream {
    /// Why `image` is not `base` with the stream's writes from one index m in `began` on
    /// applied (nil if it is): a byte last written before `began` holds `base`'s byte, one last
    /// written at or after its end that write's byte, and each byte last written within it
    /// one of the two, all agreeing on m.
    func mismatch(of image: [UInt8], mergedOnto base: [UInt8], startingWithin began: Range<Int>) -> String? {
        var last = [Int32](repeating: -1, count: image.count)
        for (index, write) in writes.enumerated() {
            for byteIndex in write.offset..<write.offset + write.length { last[byteIndex] = Int32(index) }
        }
        var lowest = began.lowerBound, highest = began.upperBound   // m lies in lowest...highest
        for byteIndex in 0..<image.count {
            let writer = Int(last[byteIndex])
            let written = writer >= 0 ? writes[writer].byte : nil
            if writer < began.lowerBound || writer >= began.upperBound {
                let wanted = writer >= began.upperBound ? written! : base[byteIndex]
                if image[byteIndex] != wanted { return "byte \(byteIndex) is \(image[byteIndex]), not \(wanted) (last written by write \(writer))" }
                continue
            }
            let isWritten = image[byteIndex] == written, isBase = image[byteIndex] == base[byteIndex]
            if !isWritten && !isBase { return "byte \(byteIndex) is \(image[byteIndex]): neither the snapshot's nor write \(writer)'s" }
            if isWritten && !isBase { highest = min(highest, writer) }   // the write came after the start
            if isBase && !isWritten { lowest = max(lowest, writer + 1) }  // it came before
        }
        return lowest <= highest ? nil : "no single instant: writes up to \(lowest - 1) came before the merge's start, write \(highest) after"
    }
}

/// qemu-io writing a `WriteStream` to an NBD URI in the background, its output in a file, line
/// by line (`stdbuf`): each "wrote" line is printed once that write is acknowledged.
final class QemuIOStream {
    private let process = Process()
    private let log: String

    init(_ stream: WriteStream, uri: String, log: String) throws {
        self.log = log
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.executableURL = URL(fileURLWithPath: "/usr/bin/stdbuf")
        process.arguments = ["-oL", "qemu-io", "-f", "raw"] + stream.commands.flatMap { ["-c", $0] } + [uri]
        process.standardOutput = output
        process.standardError = output
        try process.run()
    }

    var isRunning: Bool { process.isRunning }

    var output: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    /// The writes acknowledged so far, at least.
    var acknowledged: Int { output.split(separator: "\n").count { $0.hasPrefix("wrote ") } }

    /// Waits until `count` writes are acknowledged; throws if the client ends first or after
    /// 60 s.
    func wait(forAcknowledged count: Int) throws {
        let deadline = Date().addingTimeInterval(60)
        while acknowledged < count {
            guard isRunning, Date() < deadline else { throw StreamStalled(count: count, output: output) }
            Thread.sleep(forTimeInterval: 0.005)
        }
    }

    struct StreamStalled: Error, CustomStringConvertible {
        let count: Int, output: String
        var description: String { "qemu-io ended or stalled before \(count) writes were acknowledged: \(output.suffix(500))" }
    }

    @discardableResult
    func waitForExit() -> Int32 {
        process.waitUntilExit()
        return process.terminationStatus
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
}
