import BlockDevices
import VolumeTargets

/// Carries out one transmission request on a volume (off the event loop).
enum NBDCommand {
    enum Outcome: Sendable {
        case done([UInt8]?)
        case failed(UInt32)
    }

    static let zeroStep = 1 << 20

    static func perform(_ request: NBDRequest, on volume: any Volume) async -> Outcome {
        do {
            switch request.type {
            case NBD.cmdRead:
                return .done(try await volume.readBytes(at: request.offset, count: Int(request.length)))
            case NBD.cmdWrite:
                try await volume.writeBytes(request.payload, at: request.offset)
            case NBD.cmdWriteZeroes:
                var done: UInt64 = 0
                while done < UInt64(request.length) {
                    let count = Int(min(UInt64(zeroStep), UInt64(request.length) - done))
                    try await volume.writeBytes([UInt8](repeating: 0, count: count), at: request.offset + done)
                    done += UInt64(count)
                }
            case NBD.cmdFlush:
                try await volume.flush()
                return .done(nil)
            default:
                return .failed(NBD.errInvalid)
            }
            if request.flags & NBD.cmdFlagFUA != 0 { try await volume.flush() }
            return .done(nil)
        } catch {
            return .failed(errorCode(error))
        }
    }

    /// The NBD error for an engine error.
    static func errorCode(_ error: any Error) -> UInt32 {
        switch error {
        case VolumeError.outOfRange: return NBD.errInvalid
        case VolumeError.overflow: return NBD.errNoSpace
        case let device as DeviceError: return device.errno == .noSpace ? NBD.errNoSpace : NBD.errIO
        default: return NBD.errIO
        }
    }
}
