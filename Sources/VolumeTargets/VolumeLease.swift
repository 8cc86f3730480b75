/// A volume held open by a client outside the engine (an NBD session), for as long as the
/// client needs it: whoever hands out leases (the controller) may refuse to remove a volume
/// while one is held.
///
/// Invariant: `release` is called once the client is done; calling it again is harmless.
public struct VolumeLease: Sendable {
    public let volume: any Volume
    public let release: @Sendable () -> Void

    public init(volume: any Volume, release: @escaping @Sendable () -> Void) {
        self.volume = volume
        self.release = release
    }
}
