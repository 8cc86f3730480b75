import Controller
import Foundation

/// The `n` form (and `N`, prefilled with every origin): fields for new snapshots, validated
/// before anything is created. Several origins in the Origin field (separated by spaces or
/// commas) make a consistent group, taken at one instant: each snapshot is named
/// `<name>-<origin>`, and the COW path field names the directory of their COW files.
///
/// Invariant: `errors` holds, per field, why its current value would be refused; the form can be
/// submitted only when it is empty.
public struct SnapshotForm: Sendable {
    /// The form's fields, in focus order (Tab moves to the next).
    public enum Field: Int, CaseIterable, Sendable {
        case name, origin, cowPath, cowSize, chunkSize

        public var label: String {
            switch self {
            case .name: return "Name"
            case .origin: return "Origin"
            case .cowPath: return "COW path"
            case .cowSize: return "COW size"
            case .chunkSize: return "Chunk size"
            }
        }
    }

    public var values: [Field: String]
    public var focus = Field.name
    public private(set) var errors: [Field: String] = [:]
    /// An error from the controller after submitting (shown at the bottom of the form).
    public var submitError: String?

    public init(origin: String, poolDirectory: String) {
        values = [.name: "", .origin: origin, .cowPath: "", .cowSize: "", .chunkSize: "16K"]
        self.poolDirectory = poolDirectory
    }

    let poolDirectory: String

    public mutating func type(_ character: Character) {
        values[focus, default: ""].append(character)
        submitError = nil
    }

    public mutating func backspace() {
        if !(values[focus] ?? "").isEmpty { values[focus]!.removeLast() }
        submitError = nil
    }

    public mutating func moveFocus(by delta: Int) {
        let all = Field.allCases
        focus = all[(focus.rawValue + delta + all.count) % all.count]
    }

    /// The origins typed, in order.
    public var origins: [String] {
        (values[.origin] ?? "").split(whereSeparator: { $0 == " " || $0 == "," }).map(String.init)
    }

    /// Whether the form makes a consistent group (several origins).
    public var isGroup: Bool { origins.count > 1 }

    /// The snapshots' names: the typed name, or in a group `<name>-<origin>` per origin.
    public var names: [String] {
        let name = values[.name] ?? ""
        return isGroup ? origins.map { Controller.groupMemberName(name, origin: $0) } : [name]
    }

    /// The COW path of the snapshot called `name`: the typed path, or `<pool>/<name>.cow`; in a
    /// group, `<typed directory or pool>/<name>.cow`.
    public func cowPath(of name: String) -> String {
        let typed = absolute(values[.cowPath] ?? "")
        if isGroup { return Controller.defaultCowPath(of: name, in: typed.isEmpty ? poolDirectory : typed) }
        return typed.isEmpty ? Controller.defaultCowPath(of: name, in: poolDirectory) : typed
    }

    /// The COW path shown when the field is empty.
    public var defaultCowPath: String { isGroup ? poolDirectory : cowPath(of: names[0]) }

    private func absolute(_ path: String) -> String {
        path.isEmpty || path.hasPrefix("/") ? path : "\(FileManager.default.currentDirectoryPath)/\(path)"
    }

    /// Checks every field against the pool as it is now; returns the requests (one, or one per
    /// origin of a group) if all are valid.
    public mutating func validate(against status: PoolStatus, registry: Registry) -> [SnapshotRequest]? {
        errors = [:]
        checkNames(registry)
        let found = origins.compactMap { status.origin(named: $0) }
        if origins.isEmpty { errors[.origin] = "an origin, or several for a group" }
        else if let missing = origins.first(where: { name in !found.contains { $0.name == name } }) { errors[.origin] = "no origin '\(missing)'" }
        let chunk = checkChunkSize()
        for name in names {
            guard let user = registry.user(of: cowPath(of: name)) else { continue }
            errors[.cowPath] = isGroup ? "\(name).cow in use by '\(user)'" : "in use by '\(user)'"
            break
        }
        let cowSize = checkCowSize(chunk: chunk, smallestOrigin: found.map(\.size).min())
        guard errors.isEmpty else { return nil }
        return zip(names, origins).map { name, origin in
            SnapshotRequest(name: name, origin: origin, cowPath: cowPath(of: name), cowSize: cowSize, chunkSize: chunk)
        }
    }

    private mutating func checkNames(_ registry: Registry) {
        let names = self.names
        if let bad = names.first(where: { !Registry.isValidName($0) }) {
            errors[.name] = isGroup && !(values[.name] ?? "").isEmpty ? "'\(bad)': letters, digits, . _ - (1-64)" : "letters, digits, . _ - (1-64)"
        } else if let taken = names.first(where: { registry.allNames.contains($0) }) {
            errors[.name] = "'\(taken)' already exists"
        } else if Set(names).count < names.count {
            errors[.origin] = "an origin is given twice"
        }
    }

    private mutating func checkChunkSize() -> Int {
        if let parsed = try? ByteSize.parse(values[.chunkSize] ?? ""), parsed <= UInt64(1 << 30), ChunkSizes.isValid(Int(parsed)) {
            return Int(parsed)
        }
        errors[.chunkSize] = "a power of two, 4K to 1G"
        return ChunkSizes.defaultBytes
    }

    private mutating func checkCowSize(chunk: Int, smallestOrigin: UInt64?) -> UInt64? {
        let sizeText = values[.cowSize] ?? ""
        if sizeText.isEmpty {
            if let smallestOrigin, Controller.cowSize(originSize: smallestOrigin, chunkBytes: UInt64(chunk)) < 3 * UInt64(chunk) {
                errors[.cowSize] = "origin too small for a default COW"
            }
            return nil
        }
        guard let parsed = try? ByteSize.parse(sizeText) else {
            errors[.cowSize] = "bytes, or K/M/G/T, or s"
            return nil
        }
        if parsed < 3 * UInt64(chunk) { errors[.cowSize] = "too small: at least 3 chunks (\(3 * chunk) bytes)" }
        return parsed
    }
}

/// Draws the form as a centred dialog.
enum FormRenderer {
    static func draw(_ form: SnapshotForm, on screen: Screen) {
        let width = 70, height = SnapshotForm.Field.allCases.count * 2 + 5
        let top = max(1, (screen.rows - height) / 2), left = max(0, (screen.columns - width) / 2)
        for row in 0..<height { screen.put(top + row, left, Format.cell("", width), .header) }
        screen.put(top, left + 2, "New snapshot  (Tab/Up/Down move, Enter create, Esc cancel)", .header)
        for field in SnapshotForm.Field.allCases {
            let y = top + 2 + field.rawValue * 2
            let value = form.values[field] ?? ""
            let shown = value.isEmpty && field == .cowPath ? "(default: \(form.defaultCowPath))" : value
            let marker = field == form.focus ? ">" : " "
            let label = field == .cowPath && form.isGroup ? "COW dir" : field.label
            screen.put(y, left + 1, marker + Format.cell(label, 11), .header)
            screen.put(y, left + 14, Format.cell(shown + (field == form.focus ? "_" : ""), width - 16), field == form.focus ? .selected : .text)
            if let error = form.errors[field] { screen.put(y + 1, left + 14, Format.cell("! " + error, width - 16), .error) }
        }
        if let error = form.submitError {
            screen.put(top + height - 2, left + 2, Format.cell("! " + error, width - 4), .error)
        } else if form.isGroup {
            screen.put(top + height - 2, left + 2, Format.cell("At one instant: " + form.names.joined(separator: ", "), width - 4), .header)
        }
    }
}
