/// The tables of an origin's attached snapshots, found by the snapshot's identity.
///
/// Two parallel arrays searched linearly, not a dictionary: an origin has a handful of
/// snapshots (every origin write copies into each), and comparing a few pointers costs less
/// than hashing one, on every I/O.
///
/// Invariant: `ids[i]` names the snapshot whose tables are `entries[i]`; ids are unique.
struct SnapshotTableSet {
    private var ids: [ObjectIdentifier] = []
    private var entries: [SnapshotTables] = []

    private func index(of id: ObjectIdentifier) -> Int? {
        ids.firstIndex(of: id)
    }

    /// A snapshot's tables (a copy: hot paths use `withTables`); setting nil removes them.
    subscript(id: ObjectIdentifier) -> SnapshotTables? {
        get { index(of: id).map { entries[$0] } }
        set {
            switch (index(of: id), newValue) {
            case (let index?, let tables?): entries[index] = tables
            case (let index?, nil):
                ids.remove(at: index)
                entries.remove(at: index)
            case (nil, let tables?):
                ids.append(id)
                entries.append(tables)
            case (nil, nil): break
            }
        }
    }

    /// Runs `body` on the tables of the snapshot `id` in place (a copy would retain every
    /// buffer the tables hold). Nil if it is not attached.
    mutating func withTables<R, E: Error>(_ id: ObjectIdentifier, _ body: (inout SnapshotTables) throws(E) -> R) throws(E) -> R? {
        guard let index = index(of: id) else { return nil }
        return try body(&entries[index])
    }
}
