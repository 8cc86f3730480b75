import ArgumentParser
import Controller
import VolumeTargets

extension IOCommand {
    /// `io discard`: `blkdiscard` for a volume. The range's contents are given up; on an origin
    /// the device gets back what no snapshot still shares, and shared chunks are kept (never
    /// copied, as an NBD client's TRIM). With `--zero` the range reads as zeros afterwards.
    struct Discard: AsyncParsableCommand, ForwardableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Give up a range of a volume (like blkdiscard); with --zero, make it read as zeros.",
            discussion: """
                Without --zero the range's contents become undefined: on an origin, the parts no snapshot \
                still shares are deallocated (a file gets holes) and read as zeros, the rest keeps its data, \
                since freeing it would first copy it into the snapshots. A snapshot gives nothing back: its \
                COW chunks stay allocated. With --zero the whole range is zeroed: deallocated where possible, \
                written elsewhere (copying shared chunks into the snapshots first).
                """)
        @OptionGroup var options: PoolOptions
        @OptionGroup var range: VolumeRange
        @Flag(help: "Zero the range instead: it reads as zeros afterwards.") var zero = false

        func run() async throws {
            try await guarded {
                let (offset, length) = try range.bytes()
                try await options.withController("snapvol io discard") { controller in
                    let target = try range.volume(in: controller)
                    let freed = zero
                        ? try await target.writeZeroes(offset: offset, length: length, mayDeallocate: true)
                        : try await target.discard(offset: offset, length: length)
                    try await target.flush()
                    emit(Self.summary(zeroed: zero, length: length, freed: freed, snapshot: target is Snapshot))
                }
            }
        }

        static func summary(zeroed: Bool, length: UInt64, freed: UInt64, snapshot: Bool) -> String {
            if zeroed { return "zeroed \(length) bytes: \(freed) deallocated, \(length - freed) written" }
            if snapshot { return "discarded \(length) bytes: none deallocated (a snapshot's COW chunks stay allocated)" }
            return "discarded \(length) bytes: \(freed) deallocated, \(length - freed) kept (shared with a snapshot, or the device cannot deallocate)"
        }
    }
}
