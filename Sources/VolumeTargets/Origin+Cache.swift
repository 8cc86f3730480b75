import ExceptionMachinery

extension Origin {
    /// Reads the metadata areas that may hold `chunk`'s exception into `snapshot`'s cache
    /// (normally one area), or notes that none does. Called, outside the lock, when a lookup
    /// answered `unloaded`; the caller then looks again.
    /// The answer is returned too: a caller passes it to its next lookup, which then stands
    /// even if the bucket was evicted again meanwhile (no livelock under a tiny budget).
    func resolve(_ snapshot: Snapshot, _ chunk: ChunkIndex) async throws -> ExceptionCache.Resolution {
        let id = ObjectIdentifier(snapshot)
        let (areas, generation) = state.withLock { state in
            (state.tables[id]?.exceptions.completed.candidateAreas(for: chunk) ?? [], state.tables[id]?.exceptions.completed.generation ?? 0)
        }
        for area in areas {
            let records = try await snapshot.store.readArea(area)
            if let new = state.withLock({ $0.tables[id]?.exceptions.completed.install(records, fromArea: area, for: chunk) }) {
                return ExceptionCache.Resolution(chunk: chunk, new: new, generation: generation)
            }
        }
        state.withLock { $0.tables[id]?.exceptions.completed.markAbsent(chunk, since: generation) }
        return ExceptionCache.Resolution(chunk: chunk, new: nil, generation: generation)
    }

    /// `resolve` for origin writes: a metadata read that fails invalidates the snapshot (the
    /// write cannot know whether to copy).
    func resolveForWrite(_ snapshot: Snapshot, _ chunk: ChunkIndex) async -> ExceptionCache.Resolution? {
        do {
            return try await resolve(snapshot, chunk)
        } catch {
            await invalidate(snapshot, reason: "metadata read failed: \(error)")
            return nil
        }
    }

    /// Before a merge: every record in memory, the budget lifted (the merge view must answer
    /// every lookup without I/O while the gate is closed).
    func loadWholeTable(_ snapshot: Snapshot) async throws {
        let id = ObjectIdentifier(snapshot)
        guard state.withLock({ $0.tables[id]?.exceptions.completed.budget != nil }) else { return }
        var whole = ExceptionCache()
        try await snapshot.store.readRecords { old, new in whole.insert(old: old, new: new) }
        let loaded = whole
        state.withLock { $0.tables[id]?.exceptions.completed = loaded }
    }
}
