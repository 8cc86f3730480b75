import Foundation
import Testing

/// A suite whose tests block their thread (they wait for subprocesses, sleep, read pipes): each
/// test runs on `DedicatedExecutor.forBlockingTests`, so it never holds one of the cooperative
/// threads that every async test in the run needs to resume on. Without it, in a full run on
/// 2 cores, an async test's awaits waited tens of seconds (a store format took 56 s; 0.08 s
/// alone). Two threads, as many as the cooperative ones they held: a thread per test ran every
/// such test at once, and the load broke tests that wait for a process to start.
public struct MayBlock: SuiteTrait, TestTrait, TestScoping {
    public var isRecursive: Bool { true }

    public func scopeProvider(for test: Test, testCase: Test.Case?) -> MayBlock? { testCase == nil ? nil : self }

    public func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        try await withTaskExecutorPreference(DedicatedExecutor.forBlockingTests) { try await function() }
    }
}

extension Trait where Self == MayBlock {
    /// See `MayBlock`.
    public static var mayBlock: Self { MayBlock() }
}
