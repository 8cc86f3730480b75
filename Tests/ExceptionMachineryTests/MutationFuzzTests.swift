import BlockDevices
import ExceptionMachinery
import Testing
import TestSupport

/// Hostile COW metadata: a valid store, bit-flipped, truncated, with records pointing anywhere
/// and loops of duplicates. Loading never crashes or hangs: it succeeds or throws a typed
/// `CowFormatError` (or a `DeviceError` for a truncated device). Seeded; `SNAPVOL_FUZZ_RUNS`
/// raises the count.
@Suite struct MutationFuzzTests {
    static let runs = Int(Environment.value("SNAPVOL_FUZZ_RUNS") ?? "") ?? 1500

    @Test func cowLoaderSurvivesMutations() async throws {
        var generator = SeededGenerator.fromEnvironment()
        let device = MemoryBlockDevice(size: 600 * 4096)
        let store = try await PersistentExceptionStore.format(device, geometry: try ChunkGeometry(chunkBytes: 4096))
        for i in 0..<300 { try await store.commitException(old: UInt64(i * 3), new: try store.prepareException()) }
        let pristine = device.contents
        var outcomes = (loaded: 0, refused: 0)
        for run in 0..<Self.runs {
            var bytes = pristine
            switch Int.random(in: 0..<5, using: &generator) {
            case 0:   // bit flips anywhere in the metadata chunks
                for _ in 0..<Int.random(in: 1...8, using: &generator) {
                    let at = [0, 4096, 258 * 4096].randomElement(using: &generator)! + Int.random(in: 0..<4096, using: &generator)
                    bytes[at] ^= UInt8(1) << UInt8.random(in: 0..<8, using: &generator)
                }
            case 1:   // truncation
                bytes = Array(bytes.prefix(Int.random(in: 0..<bytes.count, using: &generator)))
            case 2:   // a record pointing anywhere
                let slot = Int.random(in: 0..<256, using: &generator)
                LittleEndian.put(UInt64.random(in: 0...UInt64.max, using: &generator), into: &bytes, at: 4096 + slot * 16 + 8 * Int.random(in: 0...1, using: &generator))
            case 3:   // a loop of duplicates: one record copied over many slots
                let source = Int.random(in: 0..<256, using: &generator)
                for slot in 0..<256 where Bool.random(using: &generator) {
                    bytes.replaceSubrange(4096 + slot * 16..<4096 + slot * 16 + 16, with: bytes[4096 + source * 16..<4096 + source * 16 + 16])
                }
            default:  // random header fields
                LittleEndian.put(UInt32.random(in: 0...UInt32.max, using: &generator), into: &bytes, at: 4 * Int.random(in: 0..<4, using: &generator))
            }
            do {
                _ = try await CowScanner.scan(MemoryBlockDevice(contents: bytes), originChunks: 1 << 20)
                outcomes.loaded += 1
            } catch is CowFormatError {
                outcomes.refused += 1
            } catch is DeviceError {
                outcomes.refused += 1
            } catch {
                Issue.record("run \(run): untyped error \(error); seed \(generator.seed)")
            }
        }
        #expect(outcomes.refused > Self.runs / 4, "most mutations must be caught; seed \(generator.seed)")
        #expect(outcomes.loaded + outcomes.refused == Self.runs)
    }
}
