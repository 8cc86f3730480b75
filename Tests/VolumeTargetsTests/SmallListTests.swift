import Testing
import TestSupport
@testable import VolumeTargets

/// `SmallList` against an array as the reference model: every sequence of appends and
/// last-element replacements leaves both with the same elements, count and last element.
@Suite struct SmallListTests {
    @Test(arguments: [1, 2, 3, 4, 5])
    func matchesAnArray(seed: UInt64) {
        var generator = SeededGenerator(seed: seed)
        var list = SmallList<Int>()
        var model: [Int] = []
        for step in 0..<200 {
            if !model.isEmpty && generator.next() % 3 == 0 {
                list.replaceLast(with: step)
                model[model.count - 1] = step
            } else {
                list.append(step)
                model.append(step)
            }
            #expect(Array(list) == model, "seed \(seed), step \(step)")
            #expect(list.count == model.count && list.last == model.last && list.isEmpty == model.isEmpty)
        }
    }

    @Test func emptyListHasNothing() {
        let list = SmallList<Int>()
        #expect(list.isEmpty && list.count == 0 && list.last == nil && Array(list).isEmpty)
    }
}
