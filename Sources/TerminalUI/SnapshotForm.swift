import Controller
import Foundation

/// The `n` form: fields for a new snapshot, validated before anything is created.
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

    /// The COW path used: the typed one, or `<pool>/<name>.cow`.
    public var cowPath: String {
        let typed = values[.cowPath] ?? ""
        if !typed.isEmpty { return typed.hasPrefix("/") ? typed : "\(FileManager.default.currentDirectoryPath)/\(typed)" }
        return "\(poolDirectory)/\(values[.name] ?? "").cow"
    }

    /// Checks every field against the pool as it is now; returns the request if all are valid.
    public mutating func validate(against status: PoolStatus, registry: Registry) -> SnapshotRequest? {
        errors = [:]
        let name = values[.name] ?? ""
        if !Registry.isValidName(name) { errors[.name] = "letters, digits, . _ - (1-64)" }
        else if registry.allNames.contains(name) { errors[.name] = "'\(name)' already exists" }
        let originName = values[.origin] ?? ""
        let origin = status.origins.first { $0.name == originName }
        if origin == nil { errors[.origin] = "no origin '\(originName)'" }
        var chunk = ChunkSizes.defaultBytes
        if let parsed = try? ByteSize.parse(values[.chunkSize] ?? ""), parsed <= UInt64(1 << 30), ChunkSizes.isValid(Int(parsed)) {
            chunk = Int(parsed)
        } else {
            errors[.chunkSize] = "a power of two, 4K to 1G"
        }
        if let user = registry.user(of: cowPath) { errors[.cowPath] = "in use by '\(user)'" }
        var cowSize: UInt64?
        let sizeText = values[.cowSize] ?? ""
        if !sizeText.isEmpty {
            if let parsed = try? ByteSize.parse(sizeText) {
                cowSize = parsed
                if parsed < 3 * UInt64(chunk) { errors[.cowSize] = "too small: at least 3 chunks (\(3 * chunk) bytes)" }
            } else {
                errors[.cowSize] = "bytes, or K/M/G/T, or s"
            }
        } else if let origin, Controller.defaultCowSize(originSize: origin.size, chunkBytes: UInt64(chunk)) < 3 * UInt64(chunk) {
            errors[.cowSize] = "origin too small for a default COW"
        }
        guard errors.isEmpty else { return nil }
        return SnapshotRequest(name: name, origin: originName, cowPath: cowPath, cowSize: cowSize, chunkSize: chunk)
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
            let shown = value.isEmpty && field == .cowPath ? "(default: \(form.cowPath))" : value
            let marker = field == form.focus ? ">" : " "
            screen.put(y, left + 1, marker + Format.cell(field.label, 11), .header)
            screen.put(y, left + 14, Format.cell(shown + (field == form.focus ? "_" : ""), width - 16), field == form.focus ? .selected : .text)
            if let error = form.errors[field] { screen.put(y + 1, left + 14, Format.cell("! " + error, width - 16), .error) }
        }
        if let error = form.submitError { screen.put(top + height - 2, left + 2, Format.cell("! " + error, width - 4), .error) }
    }
}
