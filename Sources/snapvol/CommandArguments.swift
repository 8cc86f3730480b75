/// The command line as the parser and a forwarded command see it.
///
/// swift-argument-parser takes a subcommand's options after the subcommand only, but users write
/// `snapvol --pool DIR status` as they write `git -C DIR status`. The pool options (`--pool`,
/// `--wait`) given before the first subcommand move to the end (before a `--`, if any), where
/// every command that opens a pool takes them; nothing else moves.
enum CommandArguments {
    /// `CommandLine.arguments` without the program name, pool options moved.
    static let current = normalized(Array(CommandLine.arguments.dropFirst()))

    static let movable = ["--pool", "--wait"]

    static func normalized(_ arguments: [String]) -> [String] {
        var leading: [String] = []
        var rest = arguments[...]
        while let first = rest.first {
            if movable.contains(where: { first.hasPrefix($0 + "=") }) {
                leading.append(first)
                rest = rest.dropFirst()
            } else if movable.contains(first), rest.count >= 2 {
                leading += rest.prefix(2)
                rest = rest.dropFirst(2)
            } else {
                break
            }
        }
        guard !leading.isEmpty else { return arguments }
        var result = Array(rest)
        result.insert(contentsOf: leading, at: result.firstIndex(of: "--") ?? result.endIndex)
        return result
    }
}
