import AsyncPrimitives

/// Counts I/O in flight on an origin and lets a reconfiguration (a snapshot joining or leaving,
/// a merge starting or stepping) close the gate, wait until the count drains to zero, and reopen.
/// Lives inside the origin's locked state; the events are awaited outside the lock.
///
/// Invariant: while closed, `enter` admits nothing; `drained` fires once `inFlight` is zero.
struct IOGate {
    private(set) var inFlight = 0
    private var reopened: OneShotEvent<Void>?
    private var drained: OneShotEvent<Void>?

    /// Whether a closer holds the gate (new I/O waits).
    var isClosed: Bool { reopened != nil }

    /// Admits one I/O, or returns the event to wait for before trying again.
    mutating func enter() -> OneShotEvent<Void>? {
        if let reopened { return reopened }
        inFlight += 1
        return nil
    }

    /// Counts one more I/O for a caller already inside (a queued write outliving its request),
    /// even while a closer waits: the drain then waits for it too.
    mutating func extend() {
        precondition(inFlight > 0, "only an I/O inside the gate can extend it")
        inFlight += 1
    }

    mutating func leave() {
        inFlight -= 1
        if inFlight == 0, let drained {
            drained.signal()
            self.drained = nil
        }
    }

    /// Closes the gate; returns the event of the drain, or nil if another closer holds it
    /// (then wait on the returned `busy` event and retry).
    mutating func close() -> (drained: OneShotEvent<Void>?, busy: OneShotEvent<Void>?) {
        if let reopened { return (nil, reopened) }
        reopened = OneShotEvent()
        let event = OneShotEvent<Void>()
        if inFlight == 0 { event.signal() } else { drained = event }
        return (event, nil)
    }

    mutating func open() {
        reopened?.signal()
        reopened = nil
    }
}
