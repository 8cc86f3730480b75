import Glibc
import Synchronization

/// Busy polling before sleeping, for one event loop: once a session has answered its last
/// request in flight, the loop polls its sessions' sockets (without blocking) for up to
/// `limit` before it returns to `epoll_wait`. A client sending one request at a time sends the
/// next within tens of microseconds; caught by the poll, it costs no sleep and no wake-up. On
/// this VM (idle vCPUs halt at once) a wake-up is the largest cost of a small request: random
/// 4K writes over NBD went from about 14,000 to 24,000 per second. The cost is at most `limit`
/// of CPU per idle gap, and a loop's other work waits at most that long. Linux's
/// `net.core.busy_poll` does the same for network sockets; 50 µs is its usual setting.
///
/// Invariant: `descriptors` are the sockets of this loop's sessions in transmission without TLS
/// (TLS may hold a request already read from the socket, which the poll would not see). A
/// descriptor removed late (its socket closed, its number reused) can only end a poll early.
final class NBDBusyPoll: Sendable {
    let limit: Duration
    /// The sockets to poll, ready for `poll(2)`. Only the loop's thread touches them (sessions
    /// add and remove on it, and polls run on it), so the lock is never contended; polling in
    /// place under it spares each poll an allocation.
    private let descriptors = Mutex<[pollfd]>([])
    /// How many polls ran, and how many found a socket readable before `limit`.
    private let polls = Atomic(0)
    private let caught = Atomic(0)

    init(limit: Duration) { self.limit = limit }

    func add(_ descriptor: Int32) {
        descriptors.withLock { $0.append(pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)) }
    }

    func remove(_ descriptor: Int32) {
        descriptors.withLock { list in list.firstIndex { $0.fd == descriptor }.map { _ = list.remove(at: $0) } }
    }

    /// Returns once a socket of the loop is readable (or hung up), or `limit` has passed.
    func pollBeforeSleeping() {
        descriptors.withLock { polled in
            guard !polled.isEmpty else { return }
            polls.add(1, ordering: .relaxed)
            let clock = ContinuousClock()
            let deadline = clock.now.advanced(by: limit)
            repeat {
                if poll(&polled, nfds_t(polled.count), 0) != 0 {
                    caught.add(1, ordering: .relaxed)
                    return
                }
            } while clock.now < deadline
        }
    }

    /// The polls so far, and those that caught a request (or a hang-up) before sleeping.
    var figures: NBDBusyPollFigures {
        NBDBusyPollFigures(polls: polls.load(ordering: .relaxed), caught: caught.load(ordering: .relaxed))
    }
}

/// A session's socket descriptor (owned by its channel) and its event loop's busy poll, if any.
struct NBDSessionSocket: Sendable {
    let descriptor: Int32
    let busyPoll: NBDBusyPoll?
}

/// How busy polling went: polls run, and those that found a socket readable before their limit.
public struct NBDBusyPollFigures: Sendable, Equatable {
    public var polls = 0
    public var caught = 0
}
