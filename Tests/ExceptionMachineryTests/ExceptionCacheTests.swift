import BlockDevices
import ExceptionMachinery
import Testing
import TestSupport

/// The bounded exception cache against a dictionary, with a real persistent store on memory
/// as its backing store.
@Suite struct ExceptionCacheTests {
    /// Commits `count` exceptions at random origin chunks through a store, mirroring them into
    /// `cache`; returns the model.
    static func fill(_ cache: inout ExceptionCache, store: PersistentExceptionStore, count: Int, originChunks: UInt64,
                     using generator: inout SeededGenerator) async throws -> [ChunkIndex: ChunkIndex] {
        var model: [ChunkIndex: ChunkIndex] = [:]
        while model.count < count {
            let old = ChunkIndex.random(in: 0..<originChunks, using: &generator)
            if model[old] != nil { continue }
            let new = try store.prepareException()
            try await store.commitException(old: old, new: new)
            cache.insert(old: old, new: new)
            model[old] = new
        }
        return model
    }

    /// What `Origin.resolve` does: look, read candidate areas on `unloaded`, look again.
    static func answer(_ old: ChunkIndex, _ cache: inout ExceptionCache, _ store: PersistentExceptionStore) async throws -> (ChunkIndex?, reads: Int) {
        var reads = 0
        var resolved: ExceptionCache.Resolution?
        while true {
            switch cache.lookup(old, resolved: resolved) {
            case .mapped(let new): return (new, reads)
            case .absent: return (nil, reads)
            case .unloaded:
                #expect(resolved == nil, "a resolved chunk must be answered")
                if resolved != nil { return (nil, reads) }
                let generation = cache.generation
                var found: ChunkIndex?
                for area in cache.candidateAreas(for: old) where found == nil {
                    reads += 1
                    found = cache.install(try await store.readArea(area), fromArea: area, for: old)
                }
                if found == nil { cache.markAbsent(old, since: generation) }
                resolved = ExceptionCache.Resolution(chunk: old, new: found, generation: generation)
            }
        }
    }

    @Test(arguments: [512, 4096, 65536])
    func boundedCacheAnswersLikeADictionary(_ budget: Int) async throws {
        var generator = SeededGenerator.fromEnvironment()
        let geometry = try ChunkGeometry(chunkBytes: 4096)
        let device = MemoryBlockDevice(name: "cow", size: 8 << 20)
        let store = try await PersistentExceptionStore.format(device, geometry: geometry)
        var cache = ExceptionCache(budget: .init(bytes: budget, bucketShift: 4), layout: store.areaLayout, capacity: store.capacity)
        let model = try await Self.fill(&cache, store: store, count: 1500, originChunks: 20_000, using: &generator)
        #expect(cache.count == model.count)
        var totalReads = 0
        for _ in 0..<4000 {
            let old = ChunkIndex.random(in: 0..<20_000, using: &generator)
            let (answer, reads) = try await Self.answer(old, &cache, store)
            totalReads += reads
            #expect(answer == model[old], "chunk \(old), budget \(budget), seed \(generator.seed)")
        }
        let figures = cache.currentFigures
        #expect(figures.exceptions == model.count)
        #expect(figures.residentExceptions < model.count, "a small budget must have evicted something")
        if budget >= 65536 { #expect(figures.residentBytes <= budget, "resident \(figures.residentBytes) over budget \(budget)") }
        #expect(totalReads > 0)
    }

    /// A sequential pattern costs well under a byte per exception, unbounded.
    @Test func sequentialPatternIsCompact() {
        var cache = ExceptionCache()
        for chunk in 0..<ChunkIndex(327_680) { cache.insert(old: chunk, new: chunk + 2 + chunk / 1024) }
        let figures = cache.currentFigures
        #expect(Double(figures.residentBytes) / Double(figures.exceptions) < 1.0, "\(figures.residentBytes) bytes")
    }

    /// After eviction, a chunk never written is answered from the filters without reading
    /// (most of the time) and a chunk written is found with about one area read.
    @Test func missesCostAboutOneAreaRead() async throws {
        var generator = SeededGenerator.fromEnvironment()
        let geometry = try ChunkGeometry(chunkBytes: 4096)
        let store = try await PersistentExceptionStore.format(MemoryBlockDevice(name: "cow", size: 16 << 20), geometry: geometry)
        var cache = ExceptionCache(budget: .init(bytes: 32 << 10), layout: store.areaLayout, capacity: store.capacity)
        let model = try await Self.fill(&cache, store: store, count: 3000, originChunks: 1 << 20, using: &generator)
        var positiveReads = 0, negativeReads = 0, negatives = 0
        for old in model.keys.prefix(500) { positiveReads += try await Self.answer(old, &cache, store).reads }
        for _ in 0..<2000 {
            let old = ChunkIndex.random(in: 0..<(1 << 20), using: &generator)
            if model[old] != nil { continue }
            negatives += 1
            negativeReads += try await Self.answer(old, &cache, store).reads
        }
        #expect(Double(positiveReads) / 500 <= 1.5, "reads per positive lookup: \(positiveReads) / 500, seed \(generator.seed)")
        #expect(Double(negativeReads) / Double(negatives) <= 0.2, "reads per negative lookup: \(negativeReads) / \(negatives)")
    }
}
