import ArgumentParser
import BlockDevices
import Controller
import Foundation
import VolumeTargets

struct IOCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "io", abstract: "Read and write volumes directly.", subcommands: [Write.self, Read.self, Dump.self, Map.self, Discard.self])

    static let step = 1 << 20

    struct Write: AsyncParsableCommand, ForwardableCommand {
        static let configuration = CommandConfiguration(abstract: "Write a byte pattern or a file's bytes to a volume.")
        @OptionGroup var options: PoolOptions
        @OptionGroup var range: VolumeRange
        @Option(help: "Fill with this byte (0-255, or 0x00-0xff).") var pattern: String?
        @Option(help: "Take the bytes from this file.") var input: String?


        static func byte(_ text: String) -> UInt8? {
            text.hasPrefix("0x") ? UInt8(text.dropFirst(2), radix: 16) : UInt8(text)
        }

        func run() async throws {
            try await guarded {
                guard (pattern == nil) != (input == nil) else { throw ControllerError.refused("give exactly one of --pattern or --input") }
                if let pattern, Self.byte(pattern) == nil { throw ControllerError.refused("invalid --pattern '\(pattern)': a byte from 0 to 255") }
                let (offset, length) = try range.bytes()
                let source: FileHandle? = try input.map { path in
                    guard let handle = FileHandle(forReadingAtPath: absolutePath(path)) else { throw ControllerError.pathMissing(absolutePath(path)) }
                    return handle
                }
                if let input {
                    let size = (try? FileManager.default.attributesOfItem(atPath: absolutePath(input))[.size] as? UInt64) ?? 0
                    if size < length { throw ControllerError.refused("\(absolutePath(input)) holds \(size) bytes, fewer than \(length)") }
                }
                try await options.withController("snapvol io write") { controller in
                    let target = try range.volume(in: controller)
                    var done: UInt64 = 0
                    while done < length {
                        let count = Int(min(UInt64(IOCommand.step), length - done))
                        let bytes = source.map { [UInt8]($0.readData(ofLength: count)) } ?? [UInt8](repeating: Self.byte(pattern!)!, count: count)
                        try await target.writeBytes(bytes, at: offset + done)
                        done += UInt64(count)
                    }
                    try await target.flush()
                }
            }
        }
    }

    struct Read: AsyncParsableCommand, ForwardableCommand {
        static let configuration = CommandConfiguration(abstract: "Read raw bytes of a volume to stdout or a file.")
        @OptionGroup var options: PoolOptions
        @OptionGroup var range: VolumeRange
        @Option(help: "Write to this file instead of stdout.") var output: String?

        func run() async throws {
            try await guarded {
                let (offset, length) = try range.bytes()
                try await options.withController("snapvol io read") { controller in
                    let source = try range.volume(in: controller)
                    let sink = try openOutput(output)
                    try await copy(source, offset: offset, length: length, to: sink, progress: nil)
                }
            }
        }
    }

    struct Dump: AsyncParsableCommand, ForwardableCommand {
        static let configuration = CommandConfiguration(abstract: "Write a whole volume image to a file (with a progress bar on a terminal).")
        @OptionGroup var options: PoolOptions
        @Argument(help: "Origin or snapshot name.", completion: VolumeCompletion.volumes) var volume: String
        @Option(help: "The image file to write.") var output: String

        func run() async throws {
            try await guarded {
                try await options.withController("snapvol io dump") { controller in
                    let source = try controller.volume(named: volume)
                    let sink = try openOutput(output)
                    let bar = ProgressBar(label: "dumping \(volume)")
                    try await copy(source, offset: 0, length: source.size, to: sink, progress: bar)
                    bar.finish()
                }
            }
        }
    }
}

/// The VOLUME OFFSET LENGTH arguments of `io write`, `io read` and `io discard`.
struct VolumeRange: ParsableArguments {
    @Argument(help: "Origin or snapshot name.", completion: VolumeCompletion.volumes) var volume: String
    @Argument(help: "Byte offset.") var offset: String
    @Argument(help: "Number of bytes.") var length: String

    /// The offset and length in bytes (sizes as `ByteSize` parses them).
    func bytes() throws -> (offset: UInt64, length: UInt64) { (try ByteSize.parse(offset), try ByteSize.parse(length)) }

    /// The named volume, once the range is checked against its size.
    func volume(in controller: Controller) throws -> any Volume {
        let (offset, length) = try bytes()
        let target = try controller.volume(named: volume)
        try target.checkRange(offset: offset, length: length)
        return target
    }
}

/// Where `io read` and `io dump` write: a file, or the command's standard output. A file
/// skips what reads as zeros (`skip` moves past it, `finish` sets the length), so the image of a
/// sparse volume is sparse; standard output is written every byte.
struct OutputSink {
    let write: (Data) throws -> Void
    /// Moves `count` bytes on without writing them; nil where every byte must be written.
    let skip: ((UInt64) throws -> Void)?
    /// Waits until what was written has left the process (standard output of a forwarded command).
    var drain: @Sendable () async -> Void = {}
    let finish: () throws -> Void
}

func openOutput(_ path: String?) throws -> OutputSink {
    guard let path else {
        let environment = CommandEnvironment.current
        return OutputSink(write: { environment.stdout($0) }, skip: nil, drain: environment.drainOutput, finish: {})
    }
    let absolute = absolutePath(path)
    guard FileManager.default.createFile(atPath: absolute, contents: nil), let handle = FileHandle(forWritingAtPath: absolute) else {
        throw ControllerError.refused("cannot write \(absolute)")
    }
    return OutputSink(write: { try handle.write(contentsOf: $0) },
                      skip: { try handle.seek(toOffset: try handle.offset() + $0) },
                      finish: {
                          try handle.truncate(atOffset: try handle.offset())
                          try handle.synchronize()
                          try handle.close()
                      })
}

/// Copies `length` bytes at `offset` of `volume` to `sink`, following the volume's data map:
/// data is read and written, holes are skipped where the sink can (read as zeros elsewhere).
func copy(_ volume: any Volume, offset: UInt64, length: UInt64, to sink: OutputSink, progress: ProgressBar?) async throws {
    let buffer = AlignedBuffer(count: IOCommand.step)
    var done: UInt64 = 0
    while done < length {
        // A sink that must write every byte reads holes too: no map to ask for.
        let map = sink.skip == nil ? RangeMap.whole(offset + done, offset + length)
                                   : try await volume.dataMap(offset: offset + done, length: length - done)
        for extent in map.extents {
            if !extent.marked, let skip = sink.skip {
                try skip(extent.length)
            } else {
                try await copyBytes(volume, offset: offset + done, length: extent.length, through: buffer, to: sink)
            }
            done += extent.length
            progress?.update(done: done, total: length)
        }
    }
    try sink.finish()
}

/// Reads `length` bytes at `offset` in pieces of `buffer`'s size and writes each to `sink`.
private func copyBytes(_ volume: any Volume, offset: UInt64, length: UInt64, through buffer: AlignedBuffer,
                       to sink: OutputSink) async throws {
    var done: UInt64 = 0
    while done < length {
        let count = Int(min(UInt64(buffer.count), length - done))
        let piece = UnsafeMutableRawBufferPointer(rebasing: buffer.mutableBytes[0..<count])
        try await volume.read(into: piece, at: offset + done)
        try sink.write(Data(UnsafeRawBufferPointer(piece)))
        await sink.drain()
        done += UInt64(count)
    }
}
