@testable import Controller
import Synchronization
import Testing
import Dispatch
import TestSupport

/// The claims that keep a volume open by a client from being removed (see also
/// `NBDClientTests.aVolumeOpenByAClientIsRemovedOnlyWithForce`, end to end).
struct VolumeClaimsTests {
    @Test func aClaimedVolumeIsRefusedUntilReleased() throws {
        let claims = VolumeClaims()
        let release = try #require(claims.claim("snap") {})
        _ = try #require(claims.claim("data") {})
        #expect(claims.clients(of: "snap") == 1)
        #expect(throws: ControllerError.volumeInUse(name: "snap", clients: 1)) { try claims.beginRemoval(of: ["snap"], force: false) }
        release()
        release()   // twice is harmless
        #expect(claims.clients(of: "snap") == 0)
        #expect(try claims.beginRemoval(of: ["snap"], force: false) == 0)
        claims.endRemoval(of: ["snap"])
        #expect(claims.clients(of: "data") == 1)
    }

    @Test func forceDisconnectsEachHolderOnceAndBarsNewClaimsMeanwhile() throws {
        let claims = VolumeClaims()
        let disconnected = Mutex(0)
        for _ in 0..<3 { _ = try #require(claims.claim("snap") { disconnected.withLock { $0 += 1 } }) }
        _ = try #require(claims.claim("other") { disconnected.withLock { $0 += 100 } })
        #expect(try claims.beginRemoval(of: ["snap"], force: true) == 3)
        #expect(disconnected.withLock { $0 } == 3)
        #expect(claims.clients(of: "snap") == 0)
        #expect(claims.claim("snap") {} == nil)   // being removed
        claims.endRemoval(of: ["snap"])
        #expect(claims.claim("snap") {} != nil)   // a new volume of that name may be opened
        #expect(claims.clients(of: "other") == 1)
    }
}

/// Clients claiming and releasing volumes on three threads while a fourth removes them, forced
/// or not, in a seeded random order: a volume being removed never shows a client, a holder is
/// disconnected at most once, and everything released leaves no claim behind. (Whether a forced
/// removal meets a holder depends on the threads' timing; `VolumeClaimsTests` checks that case
/// deterministically.)
struct VolumeClaimsConcurrencyTests {
    @Test func removalsNeverSeeClientsAndDisconnectEachHolderOnce() {
        let seed = SeededGenerator.fromEnvironment().seed
        let claims = VolumeClaims()
        let names = ["a", "b", "c"]
        let failures = Mutex<[String]>([])
        let disconnects = Mutex<[Int: Int]>([:])
        let clientsLeft = Atomic(3)
        DispatchQueue.concurrentPerform(iterations: 4) { worker in
            var generator = SeededGenerator(seed: seed &+ UInt64(worker))
            if worker == 3 {   // removes for as long as the clients run
                while clientsLeft.load(ordering: .acquiring) > 0 {
                    let name = names.randomElement(using: &generator)!
                    guard (try? claims.beginRemoval(of: [name], force: Bool.random(using: &generator))) != nil else { continue }
                    for _ in 0..<20 where claims.clients(of: name) != 0 {
                        failures.withLock { $0.append("\(name) showed a client while being removed") }
                    }
                    claims.endRemoval(of: [name])
                }
                return
            }
            for step in 0..<3000 {
                let id = worker * 1_000_000 + step
                let name = names.randomElement(using: &generator)!
                guard let release = claims.claim(name, disconnect: { disconnects.withLock { $0[id, default: 0] += 1 } }) else { continue }
                for _ in 0..<Int.random(in: 0...50, using: &generator) { _ = claims.clients(of: name) }
                release()
            }
            clientsLeft.subtract(1, ordering: .releasing)
        }
        let twice = disconnects.withLock { $0.filter { $0.value > 1 } }
        #expect(failures.withLock { $0 }.isEmpty, "seed \(seed): \(failures.withLock { $0.prefix(3) })")
        #expect(twice.isEmpty, "seed \(seed): disconnected more than once: \(twice.prefix(3))")
        #expect(names.allSatisfy { claims.clients(of: $0) == 0 }, "seed \(seed)")
    }
}
