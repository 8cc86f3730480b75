import Dispatch
import Glibc

/// The signals `serve` handles, as streams: SIGINT and SIGTERM shut it down cleanly; SIGHUP
/// (`systemctl reload`, or a closed terminal) reloads what can be reloaded instead of killing it.
///
/// Invariant: made once, before the server starts, so no such signal finds its default action
/// (termination); each signal source lives as long as its stream.
struct ServeSignals {
    let shutdown = Self.stream(of: [SIGINT, SIGTERM])
    let reload = Self.stream(of: [SIGHUP])

    private static func stream(of numbers: [Int32]) -> AsyncStream<Int32> {
        AsyncStream { continuation in
            let sources = SignalSources(numbers.map { number in
                signal(number, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
                source.setEventHandler { continuation.yield(number) }
                source.resume()
                return source
            })
            continuation.onTermination = { _ in sources.cancel() }
        }
    }
}

/// Dispatch signal sources kept alive by their stream's termination handler.
// @unchecked Sendable: the array is never mutated after init, and a dispatch source may be
// cancelled from any thread (libdispatch synchronizes it).
private final class SignalSources: @unchecked Sendable {
    private let sources: [any DispatchSourceSignal]
    init(_ sources: [any DispatchSourceSignal]) { self.sources = sources }
    func cancel() { sources.forEach { $0.cancel() } }
}
