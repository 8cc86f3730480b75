import ArgumentParser
import Controller
import Foundation
import TerminalUI

/// Options of the terminal UI commands.
struct TerminalUIOptions: ParsableArguments {
    @Option(help: "Seconds between refreshes.") var delay: Double = 1
    @Option(help: "Theme name (a file NAME.theme in a themes directory): default, light, monochrome, high-contrast.")
    var theme: String?

    var terminal: TerminalOptions { TerminalOptions(delay: max(0.25, delay), themeName: theme) }
}

struct TUICommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tui", abstract: "The terminal UI: live monitoring and keyboard-driven snapshots.",
        discussion: """
            Drives the pool in-process, or attaches to 'snapvol serve' over its control socket when a server owns \
            the pool. Driving it, it answers on the control socket too, so snapvol commands run meanwhile (a cron \
            job's) go through it instead of finding the pool locked.
            """)
    @OptionGroup var options: PoolOptions
    @OptionGroup var ui: TerminalUIOptions
    @Flag(help: "Monitor only: no changes, nothing opened for writing, no pool lock taken.") var readOnly = false

    func run() async throws {
        try await guarded {
            if readOnly {
                _ = try PoolObserver.registry(options.location)
                return try await TerminalLauncher.run(source: DiskSource(location: options.location), options: ui.terminal)
            }
            if ServerSource.available(options.location) {
                return try await TerminalLauncher.run(source: ServerSource(location: options.location), options: ui.terminal)
            }
            try await options.withController("snapvol tui", as: .terminal) { controller in
                try await TerminalLauncher.run(source: ControllerSource(controller: controller), options: ui.terminal)
            }
        }
    }
}

struct MonitorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "monitor", abstract: "Read-only monitoring (the same as 'tui --read-only'), for an operator's second screen.")
    @OptionGroup var options: PoolOptions
    @OptionGroup var ui: TerminalUIOptions

    func run() async throws {
        try await guarded {
            _ = try PoolObserver.registry(options.location)
            try await TerminalLauncher.run(source: DiskSource(location: options.location), options: ui.terminal)
        }
    }
}

struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Open the TUI on a demo pool: a 256 MiB file-backed origin, two snapshots, and a writer that keeps writing.",
        discussion: "The pool is created in --dir (default: snapvol-demo in the temp directory) or reused if it exists.")
    @Option(help: "Directory of the demo pool and its files.") var dir: String?
    @Option(help: "Bytes per second the built-in writer writes.") var rate: String = "512K"
    @OptionGroup var ui: TerminalUIOptions

    func run() async throws {
        try await guarded {
            let directory = absolutePath(dir ?? (NSTemporaryDirectory() + "/snapvol-demo"))
            let location = PoolLocation(directory: "\(directory)/pool")
            let bytesPerSecond = try bytes(rate)
            if !location.exists { try await DemoPool.create(location, files: directory) }
            let controller = try await Controller.open(location, purpose: "snapvol demo")
            let writer = Task { await DemoPool.write(controller, bytesPerSecond: bytesPerSecond) }
            var failure: (any Error)?
            do {
                try await PoolHolding.whileHolding(controller, as: .terminal) {
                    try await TerminalLauncher.run(source: ControllerSource(controller: controller), options: ui.terminal)
                }
            } catch {
                failure = error
            }
            // The writer's last write lands before the pool closes, and so before its stamp.
            writer.cancel()
            await writer.value
            await controller.close()
            if let failure { throw failure }
        }
    }
}

/// The demo's pool and its writer.
enum DemoPool {
    static func create(_ location: PoolLocation, files: String) async throws {
        try Controller.initPool(location)
        let controller = try await Controller.open(location, purpose: "snapvol demo")
        try await controller.addOrigin(name: "vm-disk", path: "\(files)/vm-disk.img", size: 256 << 20)
        let origin = try controller.volume(named: "vm-disk")
        for block in stride(from: 0, to: 256 << 20, by: 4 << 20) {
            try await origin.writeBytes([UInt8](repeating: UInt8(truncatingIfNeeded: block >> 20), count: 4 << 20), at: UInt64(block))
        }
        try await controller.createSnapshot(SnapshotRequest(name: "before-upgrade", origin: "vm-disk",
                                                            cowPath: "\(files)/before-upgrade.cow", cowSize: 64 << 20, chunkSize: 16 << 10))
        try await controller.createSnapshot(SnapshotRequest(name: "hourly", origin: "vm-disk",
                                                            cowPath: "\(files)/hourly.cow", cowSize: 96 << 20, chunkSize: 64 << 10))
        await controller.close()
    }

    /// Writes random extents at about `bytesPerSecond`, nine times in ten inside a hot 32 MiB
    /// region, so the fill levels climb for minutes before they level off.
    static func write(_ controller: Controller, bytesPerSecond: UInt64) async {
        guard let origin = try? controller.volume(named: "vm-disk"), bytesPerSecond > 0 else { return }
        var generator = SystemRandomNumberGenerator()
        while !Task.isCancelled {
            let length = Int.random(in: 1...16, using: &generator) * 4096
            let hot = Int.random(in: 0..<10, using: &generator) > 0
            let span = hot ? UInt64(32 << 20) : origin.size
            let offset = UInt64.random(in: 0..<(span - UInt64(length)), using: &generator) & ~4095
            try? await origin.writeBytes([UInt8](repeating: UInt8.random(in: 0...255, using: &generator), count: length), at: offset)
            try? await Task.sleep(for: .milliseconds(Int(UInt64(length) * 1000 / bytesPerSecond)))
        }
    }
}
