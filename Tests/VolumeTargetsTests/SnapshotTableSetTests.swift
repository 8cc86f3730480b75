import ExceptionMachinery
import Testing
@testable import VolumeTargets

/// `SnapshotTableSet` against a dictionary as the reference model: additions, in-place edits
/// through the subscript and `withTables`, and removals by assigning nil leave both holding the
/// same snapshots with the same contents.
@Suite struct SnapshotTableSetTests {
    private final class Handle {}

    @Test func editsInPlaceAndRemovesLikeADictionary() throws {
        let geometry = try ChunkGeometry(chunkBytes: 4096)
        let handles = (0..<4).map { _ in Handle() }
        let ids = handles.map(ObjectIdentifier.init)
        var set = SnapshotTableSet()
        var model: [ObjectIdentifier: Int] = [:]
        for (index, id) in ids.enumerated() {
            set[id] = SnapshotTables(geometry: geometry, condition: .active, exceptions: ExceptionSet())
            model[id] = 0
            for chunk in 0..<UInt64(index + 1) {
                set[id]?.exceptions.completed.insert(old: chunk, new: chunk + 2)
                model[id]! += 1
            }
        }
        set[ids[1]]?.condition = .overflow
        _ = set.withTables(ids[2]) { $0.exceptions.completed.insert(old: 100, new: 200) }
        model[ids[2]]! += 1
        set[ids[0]] = nil
        model[ids[0]] = nil
        #expect(set.withTables(ids[0]) { _ in true } == nil)
        for id in ids.dropFirst() {
            #expect(set[id]?.exceptions.completed.count == model[id], "snapshot \(ids.firstIndex(of: id)!)")
        }
        #expect(set[ids[1]]?.condition == .overflow)
        #expect(set[ids[3]]?.condition == .active)
        set[ids[0]] = SnapshotTables(geometry: geometry, condition: .active, exceptions: ExceptionSet())
        #expect(set[ids[0]]?.exceptions.completed.count == 0)
        withExtendedLifetime(handles) {}
    }
}
