import ExceptionMachinery
import Testing
import TestSupport

@Suite struct ExceptionTableTests {
    @Test func sequentialExceptionsCoalesceIntoRunsPerBucket() {
        var table = ExceptionTable()
        for chunk in 0..<UInt64(1000) { table.insert(old: chunk, new: chunk + 2) }
        #expect(table.count == 1000)
        #expect(table.runCount == 1)
        #expect(table.lookup(999) == 1001)
        #expect(table.lookup(1000) == nil)
    }

    @Test func duplicateInsertIsRefused() {
        var table = ExceptionTable()
        let first = table.insert(old: 5, new: 9)
        let second = table.insert(old: 5, new: 10)
        #expect(first && !second)
        #expect(table.lookup(5) == 9)
    }

    /// Model-based: random inserts, removals and lookups against a plain dictionary, with one
    /// bucket of 4096 chunks and with buckets of 16 chunks (128 of them, appearing and emptying).
    @Test(arguments: [ExceptionTable.defaultBucketShift, 4])
    func matchesADictionaryUnderRandomOperations(bucketShift: Int) {
        var generator = SeededGenerator.fromEnvironment()
        var table = ExceptionTable(bucketShift: bucketShift)
        var model: [UInt64: UInt64] = [:]
        var nextNew: UInt64 = 2
        for step in 0..<20_000 {
            let chunk = UInt64.random(in: 0..<2048, using: &generator)
            switch Int.random(in: 0..<10, using: &generator) {
            case 0..<6:
                let inserted = table.insert(old: chunk, new: nextNew)
                #expect(inserted == (model[chunk] == nil), "step \(step), seed \(generator.seed)")
                if model[chunk] == nil { model[chunk] = nextNew }
                nextNew += UInt64.random(in: 1...2, using: &generator)
            case 6..<8:
                let removed = table.remove(old: chunk)
                #expect(removed == (model.removeValue(forKey: chunk) != nil), "step \(step), seed \(generator.seed)")
            default:
                #expect(table.lookup(chunk) == model[chunk], "step \(step), seed \(generator.seed)")
            }
            if table.count != model.count {
                Issue.record("count \(table.count) != \(model.count) at step \(step), seed \(generator.seed)")
                return
            }
        }
        for (old, new) in model { #expect(table.lookup(old) == new, "seed \(generator.seed)") }
        let fromRuns = table.runs.reduce(0) { $0 + Int($1.length) }
        #expect(fromRuns == model.count, "seed \(generator.seed)")
    }
}
