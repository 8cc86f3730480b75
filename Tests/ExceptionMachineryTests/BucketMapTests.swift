@testable import ExceptionMachinery
import Testing
import TestSupport

/// `BucketMap` against a dictionary as the reference model. Keys come from a small range, so
/// probe sequences collide and wrap around the end of the slots, and removals shift keys back
/// across those wraps; a second pass uses keys far apart (the multiplicative hash's other case).
@Suite struct BucketMapTests {
    @Test(arguments: [UInt64(300), 1 << 40])
    func matchesADictionaryUnderRandomOperations(keySpread: UInt64) {
        var generator = SeededGenerator.fromEnvironment()
        var map = BucketMap<Int>()
        var model: [UInt64: Int] = [:]
        for step in 0..<30_000 {
            let key = UInt64.random(in: 0..<300, using: &generator) &* (keySpread / 300 | 1)
            switch Int.random(in: 0..<10, using: &generator) {
            case 0..<4:
                let added = map.update(key, inserting: { 0 }) { value -> Int in value += step; return value }
                model[key, default: 0] += step
                #expect(added == model[key], "step \(step), seed \(generator.seed)")
            case 4..<7:
                #expect(map.removeValue(forKey: key) == model.removeValue(forKey: key), "step \(step), seed \(generator.seed)")
            case 7:
                map.compactIfSparse()
            default:
                #expect(map[key] == model[key], "step \(step), seed \(generator.seed)")
            }
            if map.count != model.count {
                Issue.record("count \(map.count) != \(model.count) at step \(step), seed \(generator.seed)")
                return
            }
        }
        #expect(Dictionary(uniqueKeysWithValues: map.entries.map { ($0.key, $0.value) }) == model, "seed \(generator.seed)")
        #expect(4 * map.count <= 3 * map.capacity || map.capacity == 0, "seed \(generator.seed)")
    }

    @Test func compactingAnEmptiedMapGivesBackItsSlots() {
        var map = BucketMap<Int>()
        for key in 0..<UInt64(1000) { map.update(key, inserting: { Int(key) }) { _ in } }
        #expect(map.capacity >= 1334)
        for key in 0..<UInt64(1000) { map.removeValue(forKey: key) }
        map.compactIfSparse()
        #expect(map.isEmpty && map.capacity == 0)
        #expect(map[5] == nil)
    }
}
