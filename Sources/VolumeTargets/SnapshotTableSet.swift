/// The tables of an origin's attached snapshots, found by the snapshot's identity.
///
/// Two parallel arrays searched linearly, not a dictionary: an origin has a handful of
/// snapshots (every origin write copies into each), and comparing a few pointers costs less
/// than hashing one, on every I/O.
///
/// Invariant: `ids[i]` names the snapshot whose tables are `entries[i]`, which is never nil
/// between accesses (the optional lets the subscript hand it out in place); ids are unique.
struct SnapshotTableSet {
    private var ids: [ObjectIdentifier] = []
    private var entries: [SnapshotTables?] = []

    /// A hand-written search, not `firstIndex(of:)`: unspecialized (in a debug build) that
    /// allocates on every I/O, which the hot-path allocation tests count.
    private func index(of id: ObjectIdentifier) -> Int? {
        var index = 0
        while index < ids.count {
            if ids[index] == id { return index }
            index += 1
        }
        return nil
    }

    /// A snapshot's tables; setting nil removes them. Mutations through the subscript
    /// (`tables[id]?.condition = ...`) happen in place: a get-then-set would copy the tables and
    /// then every buffer they hold on the first write to the copy.
    subscript(id: ObjectIdentifier) -> SnapshotTables? {
        get { index(of: id).flatMap { entries[$0] } }
        _modify {
            if let index = index(of: id) {
                yield &entries[index]
                if entries[index] == nil {
                    ids.remove(at: index)
                    entries.remove(at: index)
                }
            } else {
                var added: SnapshotTables?
                yield &added
                if let added {
                    ids.append(id)
                    entries.append(added)
                }
            }
        }
    }

    /// Runs `body` on the tables of the snapshot `id` in place. Nil if it is not attached.
    mutating func withTables<R, E: Error>(_ id: ObjectIdentifier, _ body: (inout SnapshotTables) throws(E) -> R) throws(E) -> R? {
        guard let index = index(of: id) else { return nil }
        return try body(&entries[index]!)
    }
}
