import ArgumentParser
import Controller

/// Shell completion of volume names (`snapvol snapshot delete <TAB>`), read from the pool the
/// command line names (`--pool DIR`, else the default) without taking its lock.
enum VolumeCompletion {
    enum Kind: Sendable { case origins, snapshots, remaps }

    /// The names of the given kinds starting with the word being completed.
    static func names(_ kinds: Set<Kind>) -> CompletionKind {
        .custom { words, _, prefix in
            guard let registry = try? PoolObserver.registry(pool(in: words)) else { return [] }
            var names: [String] = []
            if kinds.contains(.origins) { names += registry.origins.map(\.name) }
            if kinds.contains(.snapshots) { names += registry.origins.flatMap { $0.snapshots.map(\.name) } }
            if kinds.contains(.remaps) { names += registry.remaps.map(\.name) }
            return names.filter { $0.hasPrefix(prefix) }
        }
    }

    static let volumes = names([.origins, .snapshots, .remaps])
    static let origins = names([.origins])
    static let snapshots = names([.snapshots])
    static let remaps = names([.remaps])

    /// The pool `--pool DIR` or `--pool=DIR` names on the command line, else the default one.
    static func pool(in words: [String]) -> PoolLocation {
        for (index, word) in words.enumerated() {
            if word.hasPrefix("--pool=") { return PoolLocation(directory: absolutePath(String(word.dropFirst(7)))) }
            if word == "--pool", index + 1 < words.count { return PoolLocation(directory: absolutePath(words[index + 1])) }
        }
        return PoolLocation.defaultLocation()
    }
}
