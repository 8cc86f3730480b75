// swift-tools-version:6.1
import PackageDescription

// Layers, lowest first. A module imports only modules above it in this list.
//   CSnapvolSys        C shim for syscalls Swift cannot call (variadic ioctl)
//   AsyncPrimitives    one-shot events and semaphores that suspend tasks, never threads
//   CBlkid             system library: libblkid, what a device already holds (its signatures)
//   BlockDevices       devices: files, raw block devices, memory, fault injection
//   ExceptionMachinery chunk maths, exception tables, pending exceptions, copier, stores
//   VolumeTargets      policies: origin, snapshot, merge
//   Benchmarks         `snapvol bench`: raw I/O and the engine on the same files, medians, ratios
//   Controller         pool registry and lock, activation, commands, status model
//   NBDServer          the NBD protocol server (SwiftNIO, TLS through swift-nio-ssl) exporting volumes
//   CNcursesw          system library: ncursesw, with inline wrappers for its macros
//   TerminalUI         the TUI: view model, renderer, curses screen, themes
//   snapvol            the command line (front end)
let package = Package(
    name: "snapvol",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "snapvol", targets: ["snapvol"]),
        .library(name: "VolumeTargets", targets: ["VolumeTargets"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        // Counts heap allocations (malloc interposition) for the hot-path allocation tests and
        // `snapvol bench` run under LD_PRELOAD; never linked into the snapvol binary.
        .package(url: "https://github.com/ordo-one/malloc-interposer", from: "1.6.1"),
    ],
    targets: [
        .target(name: "CSnapvolSys"),
        .systemLibrary(name: "CBlkid", providers: [.apt(["libblkid-dev"])]),
        .target(
            name: "AsyncPrimitives",
            dependencies: [.product(name: "DequeModule", package: "swift-collections")]
        ),
        .target(
            name: "BlockDevices",
            dependencies: [
                "CSnapvolSys",
                "CBlkid",
                "AsyncPrimitives",
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .target(
            name: "ExceptionMachinery",
            dependencies: [
                "BlockDevices",
                "AsyncPrimitives",
                .product(name: "DequeModule", package: "swift-collections"),
            ]
        ),
        .target(name: "VolumeTargets", dependencies: ["ExceptionMachinery", "BlockDevices", "AsyncPrimitives"]),
        .target(name: "Benchmarks", dependencies: ["VolumeTargets", "ExceptionMachinery", "BlockDevices"]),
        .target(
            name: "Controller",
            dependencies: ["VolumeTargets", "ExceptionMachinery", "BlockDevices", "AsyncPrimitives",
                           .product(name: "SystemPackage", package: "swift-system")]
        ),
        .target(
            name: "NBDServer",
            dependencies: ["VolumeTargets", "BlockDevices", "CSnapvolSys",
                           .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                           .product(name: "NIOTLS", package: "swift-nio"), .product(name: "NIOSSL", package: "swift-nio-ssl"),
                           .product(name: "SystemPackage", package: "swift-system")]
        ),
        .systemLibrary(name: "CNcursesw"),
        .target(name: "TerminalUI", dependencies: ["Controller", "CNcursesw"]),
        .executableTarget(
            name: "snapvol",
            dependencies: ["Controller", "TerminalUI", "NBDServer", "Benchmarks", "VolumeTargets", "ExceptionMachinery", "BlockDevices",
                           .product(name: "ArgumentParser", package: "swift-argument-parser"),
                           .product(name: "SystemPackage", package: "swift-system"),
                           .product(name: "Prometheus", package: "swift-prometheus"),
                           .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                           .product(name: "NIOHTTP1", package: "swift-nio")]
        ),
        // Helpers shared by the test targets only (seeded randomness, loop devices, fixtures).
        .target(name: "TestSupport", dependencies: ["CSnapvolSys"], resources: [.copy("Fixtures")]),
        .testTarget(name: "BenchmarksTests", dependencies: ["Benchmarks"]),
        .testTarget(name: "BlockDevicesTests", dependencies: ["BlockDevices", "TestSupport"]),
        .testTarget(name: "ExceptionMachineryTests", dependencies: ["ExceptionMachinery", "TestSupport"]),
        .testTarget(name: "TerminalUITests", dependencies: ["TerminalUI", "Controller", "TestSupport", "snapvol"]),
        .testTarget(name: "NBDTests", dependencies: ["TestSupport", "snapvol", "NBDServer",
                                                    .product(name: "NIOCore", package: "swift-nio"),
                                                    .product(name: "NIOEmbedded", package: "swift-nio")]),
        .testTarget(name: "CLITests", dependencies: ["TestSupport", "Controller", "snapvol"]),
        .testTarget(name: "VolumeTargetsTests", dependencies: ["VolumeTargets", "AsyncPrimitives", "TestSupport"]),
        // Links the malloc interposer, which then replaces malloc in the whole test process.
        .testTarget(name: "HotPathAllocationTests",
                    dependencies: ["VolumeTargets", "TestSupport",
                                   .product(name: "MallocInterposerSwift", package: "malloc-interposer")]),
    ],
    swiftLanguageModes: [.v6]
)
