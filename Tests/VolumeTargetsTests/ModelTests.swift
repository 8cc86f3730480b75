import BlockDevices
import ExceptionMachinery
import Testing
import TestSupport
import VolumeTargets

/// Model-based randomized test: random origin writes, discards and zeroings, snapshot reads and writes, snapshot
/// creation and deletion, reloads from disk and merges, compared after every step with a
/// reference model in which each snapshot is a plain byte copy of the origin when taken.
@Suite struct ModelTests {
    static let steps = Int(Environment.value("SNAPVOL_MODEL_STEPS") ?? "") ?? 250

    @Test(arguments: [4096, 16384, 65536])
    func engineMatchesTheReferenceModel(_ chunkBytes: Int) async throws {
        try await run(ModelWorld(chunkBytes: chunkBytes, originChunks: 32))
    }

    /// The same, with every snapshot's exception cache limited to 2 KiB in buckets of 4
    /// chunks: the filters alone exceed that, so nearly every lookup goes back to the
    /// metadata areas, and the answers must not change.
    @Test(arguments: [4096, 65536])
    func engineMatchesTheModelWithATinyCacheBudget(_ chunkBytes: Int) async throws {
        try await run(ModelWorld(chunkBytes: chunkBytes, originChunks: 32, cacheBudget: ExceptionCache.Budget(bytes: 2048, bucketShift: 2)))
    }

    /// Write-back origin writes (acknowledged once queued) under the same model.
    @Test(arguments: [4096, 65536])
    func engineMatchesTheModelWithWriteBack(_ chunkBytes: Int) async throws {
        try await run(ModelWorld(chunkBytes: chunkBytes, originChunks: 32, writeBack: true))
    }

    private func run(_ start: ModelWorld) async throws {
        var world = start
        let chunkBytes = world.chunkBytes
        var log: [String] = []
        for step in 0..<Self.steps {
            let action = try await world.randomStep()
            log.append(action)
            let mismatch = try await world.firstMismatch()
            if let mismatch {
                Issue.record("""
                    \(mismatch) after step \(step) (\(action)); seed \(world.generator.seed), chunk \(chunkBytes)
                    last steps: \(log.suffix(8).joined(separator: "; "))
                    """)
                return
            }
        }
    }
}

/// The engine under test and the reference model, side by side.
struct ModelWorld {
    struct Member {
        let name: String
        let cow: MemoryBlockDevice
        var snapshot: Snapshot
        var image: [UInt8]
    }

    var generator = SeededGenerator.fromEnvironment()
    let chunkBytes: Int
    let size: Int
    let originDevice: MemoryBlockDevice
    var origin: Origin
    var originImage: [UInt8]
    var members: [Member] = []
    var created = 0
    let cacheBudget: ExceptionCache.Budget?
    let writeBack: Bool

    init(chunkBytes: Int, originChunks: Int, cacheBudget: ExceptionCache.Budget? = nil, writeBack: Bool = false) async throws {
        self.chunkBytes = chunkBytes
        self.cacheBudget = cacheBudget
        self.writeBack = writeBack
        size = chunkBytes * originChunks
        originDevice = patternedDevice(size: size)
        originImage = originDevice.contents
        origin = Origin(name: "origin", device: originDevice, writeBack: writeBack)
    }

    /// A random range: sometimes chunk-aligned whole chunks, sometimes ragged, up to 3 chunks.
    mutating func randomRange() -> (UInt64, Int) {
        if Bool.random(using: &generator) {
            let chunks = size / chunkBytes
            let first = Int.random(in: 0..<chunks, using: &generator)
            let count = Int.random(in: 1...min(3, chunks - first), using: &generator)
            return (UInt64(first * chunkBytes), count * chunkBytes)
        }
        let offset = Int.random(in: 0..<size, using: &generator)
        let length = Int.random(in: 1...min(3 * chunkBytes, size - offset), using: &generator)
        return (UInt64(offset), length)
    }

    mutating func randomBytes(_ count: Int) -> [UInt8] {
        patternBytes(seed: UInt8.random(in: 0...255, using: &generator), count: count)
    }

    mutating func randomStep() async throws -> String {
        let roll = Int.random(in: 0..<100, using: &generator)
        switch roll {
        case 0..<32: return try await originWrite()
        case 32..<36: return try await originDiscard()
        case 36..<40: return try await originZero()
        case 40..<55 where !members.isEmpty: return try await snapshotWrite()
        case 55..<70 where !members.isEmpty: return try await snapshotRead()
        case 70..<82 where members.count < 4: return try await createSnapshot()
        case 82..<89 where !members.isEmpty: return try await reload()
        case 89..<94 where !members.isEmpty: return try await merge()
        case 94..<100 where !members.isEmpty: return await delete()
        default: return try await originWrite()
        }
    }

    mutating func originWrite() async throws -> String {
        let (offset, length) = randomRange()
        let bytes = randomBytes(length)
        try await origin.writeBytes(bytes, at: offset)
        originImage.replaceSubrange(Int(offset)..<Int(offset) + length, with: bytes)
        return "origin write \(length)@\(offset)"
    }

    /// A discard leaves each byte as it was or zero (zero wherever no snapshot exists); the
    /// model takes what the origin reads afterwards. Snapshots must not change at all.
    mutating func originDiscard() async throws -> String {
        let (offset, length) = randomRange()
        let freed = try await origin.discard(offset: offset, length: UInt64(length))
        let after = try await origin.readBytes(at: offset, count: length)
        let before = originImage[Int(offset)..<Int(offset) + length]
        if zip(before, after).contains(where: { old, new in new != old && new != 0 }) {
            Issue.record("discard \(length)@\(offset) left bytes that are neither old nor zero; seed \(generator.seed)")
        }
        if members.isEmpty && (freed != UInt64(length) || after.contains { $0 != 0 }) {
            Issue.record("discard \(length)@\(offset) without snapshots freed \(freed) bytes; seed \(generator.seed)")
        }
        originImage.replaceSubrange(Int(offset)..<Int(offset) + length, with: after)
        return "origin discard \(length)@\(offset) freed \(freed)"
    }

    mutating func originZero() async throws -> String {
        let (offset, length) = randomRange()
        let deallocate = Bool.random(using: &generator)
        let freed = try await origin.writeZeroes(offset: offset, length: UInt64(length), mayDeallocate: deallocate)
        if !deallocate && freed != 0 { Issue.record("zeroing without deallocation freed \(freed) bytes; seed \(generator.seed)") }
        originImage.replaceSubrange(Int(offset)..<Int(offset) + length, with: repeatElement(0, count: length))
        return "origin zero \(length)@\(offset)\(deallocate ? " deallocating" : "") freed \(freed)"
    }

    mutating func snapshotWrite() async throws -> String {
        let index = Int.random(in: 0..<members.count, using: &generator)
        let (offset, length) = randomRange()
        let bytes = randomBytes(length)
        try await members[index].snapshot.writeBytes(bytes, at: offset)
        members[index].image.replaceSubrange(Int(offset)..<Int(offset) + length, with: bytes)
        return "\(members[index].name) write \(length)@\(offset)"
    }

    mutating func snapshotRead() async throws -> String {
        let member = members[Int.random(in: 0..<members.count, using: &generator)]
        let (offset, length) = randomRange()
        let bytes = try await member.snapshot.readBytes(at: offset, count: length)
        if !sameBytes(bytes, Array(member.image[Int(offset)..<Int(offset) + length])) {
            Issue.record("\(member.name) read \(length)@\(offset) differs from the model; seed \(generator.seed)")
        }
        return "\(member.name) read \(length)@\(offset)"
    }

    mutating func createSnapshot() async throws -> String {
        created += 1
        let name = "s\(created)"
        let geometry = try ChunkGeometry(chunkBytes: chunkBytes)
        let cowChunks = CowLayout(geometry: geometry).chunksToHoldWholeOrigin(UInt64(size / chunkBytes))
        let cow = MemoryBlockDevice(name: "\(name)-cow", size: Int(cowChunks) * chunkBytes)
        let store = try await PersistentExceptionStore.format(cow, geometry: geometry)
        let snapshot = try await origin.attach(name: name, store: store, cacheBudget: cacheBudget)
        members.append(Member(name: name, cow: cow, snapshot: snapshot, image: originImage))
        return "create \(name)"
    }

    /// Deactivates everything and activates it again from the devices alone.
    mutating func reload() async throws -> String {
        for member in members { await origin.detach(member.snapshot) }
        origin = Origin(name: "origin", device: originDevice, writeBack: writeBack)
        for index in members.indices {
            let store = try await PersistentExceptionStore.open(members[index].cow, originChunks: UInt64(size / chunkBytes))
            members[index].snapshot = try await origin.attach(name: members[index].name, store: store, cacheBudget: cacheBudget)
        }
        return "reload"
    }

    mutating func merge() async throws -> String {
        let index = Int.random(in: 0..<members.count, using: &generator)
        let member = members.remove(at: index)
        try await origin.merge(member.snapshot)
        originImage = member.image
        return "merge \(member.name)"
    }

    mutating func delete() async -> String {
        let member = members.remove(at: Int.random(in: 0..<members.count, using: &generator))
        await origin.detach(member.snapshot)
        return "delete \(member.name)"
    }

    /// Compares the origin and every snapshot, whole, with the model.
    func firstMismatch() async throws -> String? {
        if !sameBytes(try await origin.readBytes(at: 0, count: size), originImage) { return "origin differs" }
        for member in members where !sameBytes(try await member.snapshot.image(), member.image) {
            return "\(member.name) differs"
        }
        return nil
    }
}
