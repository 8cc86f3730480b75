import CNcursesw
import Controller
import Foundation
import Synchronization

/// The interactive loop: refreshes the model from the source, draws it, and handles keys.
/// Runs on its own thread (curses calls block for up to the input timeout); commands run as
/// tasks whose results come back through `outcome`.
public final class MonitorApp {
    private let source: any PoolSource
    private let screen: CursesScreen
    private var model = MonitorModel()
    private var view = ViewState()
    private var lastRefresh = Date.distantPast
    private var mode = InputMode.normal
    private let commands = CommandSlot()
    /// A merge in progress: the snapshot and how many exceptions it had when it started.
    /// The merge in progress (the snapshots, a group's or one) and their exceptions at its start.
    private var merging: (names: [String], total: Int)?

    enum InputMode {
        case normal, help, filter, form
        /// `force`: the snapshot had NBD clients when asked, and the user agreed to disconnect them.
        /// `group`: the snapshot's group partners, which `a` deletes or merges with it
        /// (`groupForce`: some of them, or it, are open by clients).
        case confirm(action: String, target: String, force: Bool, group: [String], groupForce: Bool)
        /// A size or a name being typed at the prompt.
        case typing(TypedValue)
    }

    public init(source: any PoolSource, screen: CursesScreen, delay: Double) {
        self.source = source
        self.screen = screen
        view.readOnly = source.readOnly
        view.pool = source.poolDirectory
        view.delay = delay
        view.message = source.readOnly ? "read-only monitoring: press ? for keys, q to quit" : "press ? for keys, n for a new snapshot, q to quit"
    }

    /// Runs until the user quits, then restores the terminal.
    public func run() {
        defer { screen.close() }
        while true {
            if !view.paused && Date().timeIntervalSince(lastRefresh) >= view.delay { refresh() }
            if let result = commands.takeResult() {
                merging = nil
                show(result.text, error: result.isError)
                refresh()
                if let name = result.select { model.select(named: name) }
            }
            if let merging { showMergeProgress(merging) }
            Renderer.draw(model, view, on: screen)
            guard let key = screen.nextKey() else { continue }
            if !handle(key) { return }
        }
    }

    private func refresh() {
        lastRefresh = Date()
        do {
            model.update(try source.status())
            view.events = source.recentEvents()
            view.chunkMap = model.selected.flatMap { $0.kind == .snapshot ? source.chunkMap(snapshot: $0.name, cells: 64) : nil }
        } catch {
            show("\(error)", error: true)
        }
    }

    private func show(_ text: String, error: Bool = false) {
        view.message = text
        view.messageIsError = error
    }

    /// Handles one key; returns false to quit.
    private func handle(_ key: Int32) -> Bool {
        if key == KEY_RESIZE { screen.measure(); return true }
        switch mode {
        case .normal: return handleNormal(key)
        case .help: mode = .normal; view.showHelp = false
        case .filter: handleFilter(key)
        case .form: handleForm(key)
        case let .confirm(action, target, force, group, groupForce):
            handleConfirm(key, action: action, target: target, force: force, group: group, groupForce: groupForce)
        case .typing(let value): handleTyping(key, value)
        }
        return true
    }

    private func handleNormal(_ key: Int32) -> Bool {
        switch key {
        case Int32(UInt8(ascii: "q")), snapvol_key_f(10): return false
        case KEY_UP, Int32(UInt8(ascii: "k")): model.move(by: -1); updateMap()
        case KEY_DOWN, Int32(UInt8(ascii: "j")): model.move(by: 1); updateMap()
        case KEY_PPAGE: model.move(by: -10); updateMap()
        case KEY_NPAGE: model.move(by: 10); updateMap()
        case Int32(UInt8(ascii: "?")), snapvol_key_f(1): mode = .help; view.showHelp = true
        case Int32(UInt8(ascii: "/")), snapvol_key_f(3): mode = .filter; view.prompt = "filter: \(model.filter)_"
        case Int32(UInt8(ascii: "s")), snapvol_key_f(4): model.sort = model.sort.next; show("sorted by \(model.sort.rawValue)")
        case Int32(UInt8(ascii: "+")): view.delay = min(view.delay * 2, 16); show("refresh every \(view.delay) s")
        case Int32(UInt8(ascii: "-")): view.delay = max(view.delay / 2, 0.25); show("refresh every \(view.delay) s")
        case Int32(UInt8(ascii: "p")): view.paused.toggle(); show(view.paused ? "refresh paused (p resumes)" : "refresh resumed")
        case Int32(UInt8(ascii: "n")), snapvol_key_f(2): startForm()
        case Int32(UInt8(ascii: "N")): startForm(everyOrigin: true)
        case Int32(UInt8(ascii: "d")), snapvol_key_f(8): askOnSnapshot("delete")
        case Int32(UInt8(ascii: "m")), snapvol_key_f(6): askOnSnapshot("merge")
        case Int32(UInt8(ascii: "e")), snapvol_key_f(5): startExtend()
        case Int32(UInt8(ascii: "r")): startRename()
        case Int32(UInt8(ascii: "t")): askToTrust()
        case Int32(UInt8(ascii: "l")): startRelocate()
        default: break
        }
        return true
    }

    private func updateMap() {
        view.chunkMap = model.selected.flatMap { $0.kind == .snapshot ? source.chunkMap(snapshot: $0.name, cells: 64) : nil }
    }

    private func refuseIfReadOnly(_ action: String) -> Bool {
        guard view.readOnly else { return false }
        show("read-only mode: '\(action)' is disabled", error: true)
        return true
    }

    /// Opens the new-snapshot form for the selected origin, or prefilled with every active origin
    /// (a consistent group).
    private func startForm(everyOrigin: Bool = false) {
        if refuseIfReadOnly("new snapshot") { return }
        let origin = everyOrigin
            ? (model.status?.origins.filter { $0.state == "active" }.map(\.name) ?? []).joined(separator: " ")
            : model.selected?.origin ?? model.status?.origins.first?.name ?? ""
        view.form = SnapshotForm(origin: origin, poolDirectory: source.poolDirectory)
        mode = .form
    }

    private func askOnSnapshot(_ action: String) {
        if refuseIfReadOnly(action) { return }
        guard let row = model.selected, row.kind == .snapshot else { return show("select a snapshot to \(action)", error: true) }
        let report = model.status?.snapshot(named: row.name)
        let clients = report?.clients ?? 0
        let group = report?.takenWith ?? []
        let groupClients = group.reduce(clients) { $0 + (model.status?.snapshot(named: $1)?.clients ?? 0) }
        mode = .confirm(action: action, target: row.name, force: clients > 0, group: group, groupForce: groupClients > 0)
        let disconnecting = clients == 0 ? "" : ", disconnecting \(VolumeClaims.describe(clients))"
        // Kept within 80 columns for short names: a group's merge prompt drops the explanation.
        let withGroup = group.isEmpty ? "(y/N)" : "(y/N, a: also \(group.joined(separator: ", ")))"
        let consumed = group.isEmpty ? " The origin rolls back and \(row.name) is consumed." : " (rolls back)"
        view.prompt = action == "merge"
            ? "Merge \(row.name) into \(row.origin)\(disconnecting)?\(consumed) \(withGroup)"
            : "Delete snapshot \(row.name)\(disconnecting)? \(withGroup)"
    }

    /// `t` on a suspect snapshot: asks before clearing the mark, saying what it vouches for.
    private func askToTrust() {
        if refuseIfReadOnly("trust") { return }
        guard let row = model.selected, row.kind == .snapshot, row.suspect else { return show("select a suspect snapshot to trust", error: true) }
        mode = .confirm(action: "trust", target: row.name, force: false, group: [], groupForce: false)
        view.prompt = "Trust \(row.name)? Only if the change found (see its detail) lost nothing. (y/N)"
    }

    private func startExtend() {
        if refuseIfReadOnly("extend") { return }
        guard let row = model.selected, row.kind != .remap else { return show("select a snapshot to extend or an origin to resize", error: true) }
        startTyping(TypedValue(purpose: row.kind == .origin ? .originSize(current: row.size) : .cowSize, target: row.name))
    }

    private func startRename() {
        if refuseIfReadOnly("rename") { return }
        guard let row = model.selected, row.kind != .remap else { return show("select a snapshot or an origin to rename", error: true) }
        let clients = row.kind == .origin ? model.status?.origin(named: row.name)?.clients : model.status?.snapshot(named: row.name)?.clients
        startTyping(TypedValue(purpose: .name(kind: row.kind, force: (clients ?? 0) > 0), target: row.name))
    }

    /// `l` on an inactive origin or snapshot: asks where its device (an origin's, a COW) is now.
    private func startRelocate() {
        if refuseIfReadOnly("relocate") { return }
        guard let row = model.selected, row.kind != .remap else { return show("select an inactive origin or snapshot to relocate", error: true) }
        guard row.state == "inactive" else {
            return show("only an inactive volume is relocated: \(row.name) is \(row.state)", error: true)
        }
        startTyping(TypedValue(purpose: .path(kind: row.kind), target: row.name))
    }

    private func startTyping(_ value: TypedValue) {
        mode = .typing(value)
        view.prompt = value.prompt
    }

    private func handleFilter(_ key: Int32) {
        switch key {
        case 27: model.filter = ""; finishPrompt()
        case 10, 13, KEY_ENTER: finishPrompt()
        case KEY_BACKSPACE, 127, 8: if !model.filter.isEmpty { model.filter.removeLast() }
        default: if let character = Self.printable(key) { model.filter.append(character) }
        }
        if case .filter = mode { view.prompt = "filter: \(model.filter)_" }
    }

    private func finishPrompt() {
        mode = .normal
        view.prompt = nil
    }

    private func handleForm(_ key: Int32) {
        guard var form = view.form else { return }
        switch key {
        case 27: view.form = nil; mode = .normal; show("cancelled")
            return
        case 9, KEY_DOWN: form.moveFocus(by: 1)
        case KEY_UP, KEY_BTAB: form.moveFocus(by: -1)
        case KEY_BACKSPACE, 127, 8: form.backspace()
        case 10, 13, KEY_ENTER:
            guard let status = model.status, let registry = try? source.registry(),
                  let requests = form.validate(against: status, registry: registry) else { break }
            view.form = nil
            mode = .normal
            let names = requests.map(\.name).joined(separator: ", ")
            let done = requests.count == 1 ? "created snapshot \(names)" : "created snapshots \(names) at one instant"
            run("creating \(names)", done: done) { [source] in try await source.createSnapshots(requests) }
            return
        default: if let character = Self.printable(key) { form.type(character) }
        }
        if let status = model.status, let registry = try? source.registry() { _ = form.validate(against: status, registry: registry) }
        view.form = form
    }

    private func handleConfirm(_ key: Int32, action: String, target: String, force: Bool, group: [String], groupForce: Bool) {
        finishPrompt()
        let wholeGroup = !group.isEmpty && (key == Int32(UInt8(ascii: "a")) || key == Int32(UInt8(ascii: "A")))
        guard wholeGroup || key == Int32(UInt8(ascii: "y")) || key == Int32(UInt8(ascii: "Y")) else { return show("\(action) cancelled") }
        let names = wholeGroup ? [target] + group : [target]
        let listed = names.joined(separator: ", ")
        let force = wholeGroup ? groupForce : force
        if action == "merge" {
            merging = (names, max(1, exceptions(of: names)))
            let done = names.count == 1 ? "merged \(listed) into its origin" : "merged \(listed) into their origins"
            run("merging \(listed)", done: done) { [source] in try await source.mergeSnapshots(names: names, force: force) }
        } else if action == "trust" {
            run("trusting \(listed)", done: "trusted snapshot \(listed): no longer suspect") { [source] in try await source.trustSnapshots(names: names) }
        } else {
            let done = names.count == 1 ? "deleted snapshot \(listed)" : "deleted snapshots \(listed)"
            run("deleting \(listed)", done: done) { [source] in try await source.deleteSnapshots(names: names, force: force) }
        }
    }

    private func handleTyping(_ key: Int32, _ value: TypedValue) {
        var value = value
        switch key {
        case 27: finishPrompt(); return show(value.cancelled)
        case 10, 13, KEY_ENTER: finishPrompt(); return submit(value)
        case KEY_BACKSPACE, 127, 8: if !value.text.isEmpty { value.text.removeLast() }
        default: if let character = Self.printable(key) { value.text.append(character) }
        }
        startTyping(value)
    }

    /// Runs the command a typed value asks for.
    private func submit(_ value: TypedValue) {
        let (target, text) = (value.target, value.text)
        if case .name(let kind, let force) = value.purpose {
            return run("renaming \(target)", done: "renamed \(target) to \(text)", select: text) { [source] in
                try await source.rename(kind, target, to: text, force: force)
            }
        }
        if case .path(let kind) = value.purpose {
            let path = text.hasPrefix("/") ? text : FileManager.default.currentDirectoryPath + "/" + text
            return run("relocating \(target)", done: "relocated \(target) to \(path)", select: target) { [source] in
                try await source.relocate(kind, target, to: path)
            }
        }
        guard let size = cowShare(text, of: target) ?? (try? ByteSize.parse(text)) else { return show("invalid size '\(text)'", error: true) }
        if case .originSize = value.purpose {
            run("resizing \(target)", done: "resized \(target) to \(ByteSize.describe(size))") { [source] in
                try await source.resizeOrigin(name: target, size: size)
            }
        } else {
            run("extending \(target)", done: "extended \(target) to \(ByteSize.describe(size))") { [source] in
                try await source.extendSnapshot(name: target, cowSize: size)
            }
        }
    }

    /// A COW size typed as a share of the snapshot's origin ("50%"), in whole chunks, as
    /// `snapshot extend --cow-size 50%` takes it; nil for anything else.
    private func cowShare(_ text: String, of snapshot: String) -> UInt64? {
        guard text.hasSuffix("%"), let percent = Double(text.dropLast()), percent > 0, percent <= 1000,
              let row = model.rows.first(where: { $0.kind == .snapshot && $0.name == snapshot }), let chunk = row.chunkSize else { return nil }
        return Controller.cowSize(percent: percent, originSize: row.size, chunkBytes: UInt64(chunk))
    }

    /// The exceptions the named snapshots hold, as last refreshed (a merged one is gone: none).
    private func exceptions(of names: [String]) -> Int {
        names.reduce(0) { $0 + (model.status?.snapshot(named: $1)?.exceptions ?? 0) }
    }

    /// The merge's progress bar in the status line: exceptions copied back so far.
    private func showMergeProgress(_ merge: (names: [String], total: Int)) {
        let left = exceptions(of: merge.names)
        let percent = Double(merge.total - min(left, merge.total)) * 100 / Double(merge.total)
        let (filled, empty) = Format.bar(percent, width: 30, unicode: screen.unicode)
        show("merging \(merge.names.joined(separator: ", ")) [\(filled)\(empty)] \(Format.percent(percent))")
    }

    /// Starts a command as a task; its result comes back to the status line.
    /// Runs a command in the background; once it succeeds, the status line says `done` and the
    /// volume named `select` (a renamed one) is selected.
    private func run(_ working: String, done: String, select: String? = nil, _ body: @escaping @Sendable () async throws -> Void) {
        guard commands.start() else { return show("another command is still running", error: true) }
        show(working + "...")
        let commands = self.commands
        Task.detached {
            do {
                try await body()
                commands.finish(done, isError: false, select: select)
            } catch {
                commands.finish("\(error)", isError: true)
            }
        }
    }

    static func printable(_ key: Int32) -> Character? {
        guard key >= 32, key < 127, let scalar = Unicode.Scalar(UInt32(key)) else { return nil }
        return Character(scalar)
    }
}

/// One command at a time from the UI, and its result for the status line.
final class CommandSlot: Sendable {
    /// A finished command's status line, and the volume to select then.
    typealias Result = (text: String, isError: Bool, select: String?)
    private let state = Mutex<(running: Bool, result: Result?)>((false, nil))

    /// Claims the slot; false if a command is still running.
    func start() -> Bool {
        state.withLock { state in
            if state.running { return false }
            state.running = true
            return true
        }
    }

    func finish(_ text: String, isError: Bool, select: String? = nil) {
        state.withLock { $0 = (false, (text, isError, select)) }
    }

    func takeResult() -> Result? {
        state.withLock { state in
            defer { state.result = nil }
            return state.result
        }
    }
}
