#if canImport(Glibc)
import Glibc
#endif

/// Counts the process's heap allocations through ordo-one's malloc interposer, when the
/// process runs with its library preloaded (`LD_PRELOAD=…/libMallocInterposerSwift.so`, built
/// with the tests). snapvol never links the interposer: without the preload `available` is nil
/// and every allocation goes straight to libc.
///
/// Invariant: the interposer's four C entry points are looked up once, all or none; counting is
/// on only inside `counting(_:)`, and the count covers every thread of the process, so the
/// engine's background work (copies, group commits) is in it too.
public struct AllocationCounter: Sendable {
    private typealias Call = @convention(c) () -> Void
    private typealias Statistics = @convention(c) (UnsafeMutablePointer<Int64>, UnsafeMutablePointer<Int64>,
                                                   UnsafeMutablePointer<Int64>, UnsafeMutablePointer<Int64>,
                                                   UnsafeMutablePointer<Int64>, UnsafeMutablePointer<Int64>) -> Void
    private let reset: Call
    private let enable: Call
    private let disable: Call
    private let statistics: Statistics

    /// The interposer's counter, or nil when the process does not have it loaded.
    public static let available: AllocationCounter? = AllocationCounter()

    private init?() {
        guard let reset = Self.symbol("malloc_interposer_reset", as: Call.self),
              let enable = Self.symbol("malloc_interposer_enable", as: Call.self),
              let disable = Self.symbol("malloc_interposer_disable", as: Call.self),
              let statistics = Self.symbol("malloc_interposer_get_stats", as: Statistics.self) else { return nil }
        (self.reset, self.enable, self.disable, self.statistics) = (reset, enable, disable, statistics)
    }

    private static func symbol<T>(_ name: String, as type: T.Type) -> T? {
        guard let address = dlsym(UnsafeMutableRawPointer(bitPattern: 0), name) else { return nil }   // RTLD_DEFAULT
        return unsafeBitCast(address, to: type)
    }

    /// Runs `body` with counting on; returns its result and the allocations made meanwhile.
    public func counting<T>(_ body: () async throws -> T) async rethrows -> (T, Int) {
        reset()
        enable()
        defer { disable() }
        let result = try await body()
        disable()
        return (result, count())
    }

    private func count() -> Int {
        var mallocs: Int64 = 0, bytes: Int64 = 0, small: Int64 = 0, large: Int64 = 0, frees: Int64 = 0, freed: Int64 = 0
        statistics(&mallocs, &bytes, &small, &large, &frees, &freed)
        return Int(mallocs)
    }
}
