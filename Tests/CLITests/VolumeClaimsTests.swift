@testable import Controller
import Synchronization
import Testing

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
