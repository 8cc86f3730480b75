import Controller
import Foundation
import Testing
import TestSupport
@testable import TerminalUI

/// The UI as data: the model, the layout on an in-memory screen, the form's validation, themes.
@Suite(.mayBlock) struct ViewModelTests {
    static func status(fill: Double = 42, state: String = "active", exceptions: Int = 10, written: UInt64 = 0,
                       residentExceptions: Int? = nil, suspect: String? = nil) -> PoolStatus {
        let table = residentExceptions.map {
            #", "table": {"resident_bytes": 4096, "resident_exceptions": \#($0), "budget_bytes": 8192, "lookups": 5, "hit_rate": 0.8, "area_reads": 1}"#
        } ?? ""
        let json = """
            {"pool": "/p", "origins": [{"name": "vm", "path": "/vm.img", "size": 67108864, "state": "active",
              "read_bytes": 0, "write_bytes": \(written), "snapshots": [
              {"name": "b-snap", "origin": "vm", "cow_path": "/b.cow", "chunk_size": 16384, "persistent": true,
               "exceptions": \(exceptions), "cow_used_bytes": 1000, "cow_total_bytes": 2000, "fill_percent": \(fill),
               "pending_copies": 3, "state": "\(state)", "dm_status": "0 131072 snapshot 2/4 1", "read_bytes": 0, "write_bytes": 0,
               "taken_with": ["db-snap"], "created": "2026-11-30T20:00:00Z"\(table)\(suspect.map { #", "suspect": "\#($0)""# } ?? "")},
              {"name": "a-snap", "origin": "vm", "cow_path": "/a.cow", "chunk_size": 4096, "persistent": true,
               "exceptions": 99, "cow_used_bytes": 10, "cow_total_bytes": 2000, "fill_percent": 5,
               "pending_copies": 0, "state": "active", "dm_status": "0 131072 snapshot 1/4 1", "read_bytes": 0, "write_bytes": 0}]}]}
            """
        return try! JSONDecoder().decode(PoolStatus.self, from: Data(json.utf8))
    }

    @Test func rowsAreATreeSortedAndFiltered() {
        var model = MonitorModel()
        model.update(Self.status())
        #expect(model.rows.map(\.name) == ["vm", "a-snap", "b-snap"])
        model.sort = .exceptions
        #expect(model.rows.map(\.name) == ["vm", "a-snap", "b-snap"])
        model.sort = .fill
        #expect(model.rows.map(\.name) == ["vm", "b-snap", "a-snap"])
        model.filter = "b-"
        #expect(model.rows.map(\.name) == ["vm", "b-snap"])
        model.filter = "nothing"
        #expect(model.rows.isEmpty)
    }

    @Test func selectionFollowsTheVolumeAcrossRefreshes() {
        var model = MonitorModel()
        model.update(Self.status())
        model.move(by: 2)
        #expect(model.selected?.name == "b-snap")
        model.sort = .fill
        #expect(model.selected?.name == "b-snap")
        model.move(by: 10)
        #expect(model.selected?.name == "a-snap")
    }

    @Test func ratesComeFromTwoSamples() {
        var model = MonitorModel()
        let start = Date()
        model.update(Self.status(written: 0), at: start)
        model.update(Self.status(written: 2_000_000), at: start.addingTimeInterval(2))
        #expect(model.rows[0].writeRate == 1_000_000)
    }

    @Test func layoutShowsTreeBarsStateAndDetail() {
        var model = MonitorModel()
        model.update(Self.status(fill: 95, state: "invalid"))
        model.select(named: "b-snap")
        let screen = TextScreen(rows: 24, columns: 80)
        var view = ViewState()
        view.pool = "/p"
        view.chunkMap = [0, 0.5, 1]
        Renderer.draw(model, view, on: screen, now: try! Date("2026-11-30T23:05:30Z", strategy: .iso8601))
        let text = screen.text
        #expect(text.contains("└ b-snap"))
        #expect(text.contains("! INVALID"), "state is never shown by colour alone")
        #expect(text.contains("95.0%"))
        #expect(text.contains("dmsetup status: 0 131072 snapshot 2/4 1"))
        #expect(text.contains("taken 2026-11-30 20:00:00 UTC, 3 h 5 min ago, at one instant with db-snap"))
        #expect(text.contains("[ ▒█]"))
        #expect(text.contains("F10Quit"))
        let barRow = screen.lines.firstIndex { $0.contains("b-snap") && $0.contains("█") }!
        #expect(screen.elements[barRow].contains(.selected))
    }

    /// The title's right end says the pool's health as `pool check` judges it, in words and
    /// in the state colours.
    @Test(arguments: [(42.0, "active", " OK ", Element.stateOK),
                      (85, "active", " WARNING: COW of b-snap is 85% full ", .stateWarn),
                      (95, "invalid", " CRITICAL: snapshot b-snap is invalid ", .stateBad)])
    func theTitleSaysThePoolsHealth(fill: Double, state: String, shown: String, style: Element) {
        var model = MonitorModel()
        model.update(Self.status(fill: fill, state: state))
        let screen = TextScreen(rows: 24, columns: 100)
        Renderer.draw(model, ViewState(), on: screen)
        #expect(screen.lines[0].hasSuffix(shown.dropLast()), "\(screen.lines[0])")
        #expect(screen.elements[0].contains(style))
    }

    /// A snapshot whose origin was modified outside snapvol: `? SUSPECT` in its row in the error
    /// colour, why in its detail, and CRITICAL in the title.
    @Test func aSuspectSnapshotSaysSo() {
        var model = MonitorModel()
        model.update(Self.status(suspect: "its origin /vm.img was modified outside snapvol"))
        let screen = TextScreen(rows: 30, columns: 120)
        Renderer.draw(model, ViewState(), on: screen)
        let row = screen.lines.firstIndex { $0.contains("b-snap") && $0.contains("? SUSPECT") }
        #expect(row != nil, "\(screen.text)")
        if let row { #expect(screen.elements[row].contains(.stateBad)) }
        #expect(screen.lines[0].contains("CRITICAL: snapshot b-snap is suspect: its origin /vm.img was modified"), "\(screen.lines[0])")
        model.select(named: "b-snap")
        Renderer.draw(model, ViewState(), on: screen)
        #expect(screen.text.contains("state active (SUSPECT: its origin /vm.img was modified outside snapvol)"), "\(screen.text)")
    }

    /// The selected volume's events under its detail; an alarm carries `!` and the error colour.
    @Test func alarmEventsStandOut() {
        var model = MonitorModel()
        model.update(Self.status())
        model.select(named: "b-snap")
        var view = ViewState()
        let time = Date(timeIntervalSince1970: 1_800_000_000)
        view.events = [EventJournal.Entry(sequence: 0, time: time, text: "b-snap: created (COW /b.cow, chunk 16 KiB)", isAlarm: false),
                       EventJournal.Entry(sequence: 1, time: time, text: "a-snap: merge finished", isAlarm: false),
                       EventJournal.Entry(sequence: 2, time: time, text: "b-snap: INVALIDATED (COW store full)", isAlarm: true)]
        let screen = TextScreen(rows: 30, columns: 100)
        Renderer.draw(model, view, on: screen)
        let created = screen.lines.firstIndex { $0.contains(Format.clock(time) + " b-snap: created") }
        let alarm = screen.lines.firstIndex { $0.contains("! \(Format.clock(time)) b-snap: INVALIDATED (COW store full)") }
        #expect(created != nil && alarm != nil, "\(screen.text)")
        #expect(!screen.text.contains("a-snap: merge finished"), "only the selected volume's events")
        if let created, let alarm {
            #expect(screen.elements[alarm].contains(.error))
            #expect(!screen.elements[created].contains(.error))
        }
    }

    /// A refusal too long for the status line wraps onto the lines above it, whole, in the
    /// error colour; a short message keeps its one line.
    @Test func aLongErrorWrapsAboveTheStatusLine() {
        var model = MonitorModel()
        model.update(Self.status())
        var view = ViewState()
        view.message = "/srv/images/data.bin holds 1 MiB of written data, which formatting it as a snapshot's COW would destroy: "
            + "give a path that does not exist yet (snapvol creates the file), or add --force to overwrite it"
        view.messageIsError = true
        let screen = TextScreen(rows: 24, columns: 80)
        Renderer.draw(model, view, on: screen)
        let shown = screen.lines[20...22].map { $0.trimmingCharacters(in: .whitespaces) }
        #expect(shown.joined(separator: " ") == view.message, "\(screen.text)")
        #expect((20...22).allSatisfy { screen.elements[$0][1] == .error })
        #expect(Format.wrap(String(repeating: "word ", count: 60), width: 20, limit: 3).last?.hasSuffix("…") == true)

        view.message = "created snapshot s of a"
        view.messageIsError = false
        Renderer.draw(model, view, on: screen)
        #expect(screen.lines[22] == " created snapshot s of a" && !screen.lines[21].contains("created"))
    }

    /// A snapshot adopted with `snapshot attach` has no known creation time.
    @Test func anAttachedSnapshotsAgeIsNotKnown() {
        var model = MonitorModel()
        model.update(Self.status())
        model.select(named: "a-snap")
        let screen = TextScreen(rows: 24, columns: 80)
        Renderer.draw(model, ViewState(), on: screen)
        #expect(screen.text.contains("taken: not known (attached)"))
    }

    @Test func agesUseTheirTwoLargestUnits() {
        let cases: [(Double, String)] = [(-3, "0 s"), (59.9, "59 s"), (60, "1 min"), (3_599, "59 min"), (3_600, "1 h"),
                                         (3_660, "1 h 1 min"), (86_399, "23 h 59 min"), (86_400, "1 d"), (3 * 86_400 + 7_200 + 59, "3 d 2 h")]
        for (seconds, text) in cases { #expect(Wording.age(seconds) == text, "\(seconds)") }
    }

    /// With parts of the table evicted, the map says it shows only the part in memory.
    @Test func aPartialChunkMapSaysHowMuchIsInMemory() {
        for (resident, note) in [(4, true), (10, false)] {
            var model = MonitorModel()
            model.update(Self.status(exceptions: 10, residentExceptions: resident))
            model.select(named: "b-snap")
            let screen = TextScreen(rows: 24, columns: 80)
            var view = ViewState()
            view.chunkMap = [0, 0.5, 1]
            Renderer.draw(model, view, on: screen)
            let mapLine = screen.lines.first { $0.contains("copied out:") } ?? ""
            #expect(mapLine.contains("[ ▒█]"))
            #expect(mapLine.contains("in memory: 4 of 10") == note, "\(mapLine)")
        }
    }

    @Test func asciiFallbackAndTooSmall() {
        var model = MonitorModel()
        model.update(Self.status())
        let ascii = TextScreen(rows: 24, columns: 80, unicode: false)
        Renderer.draw(model, ViewState(), on: ascii)
        #expect(ascii.text.contains("`-a-snap"))
        #expect(!ascii.text.contains("█") && !ascii.text.contains("─"))
        let small = TextScreen(rows: 20, columns: 70)
        Renderer.draw(model, ViewState(), on: small)
        #expect(small.text.contains("terminal too small: 80x24 needed, have 70x20"))
    }

    @Test func readOnlyBlanksMutatingKeysAndSaysSo() {
        var model = MonitorModel()
        model.update(Self.status())
        let screen = TextScreen(rows: 30, columns: 100)
        var view = ViewState()
        view.readOnly = true
        view.showHelp = true
        Renderer.draw(model, view, on: screen)
        #expect(screen.lines[0].contains("READ-ONLY"))
        #expect(!screen.lines[29].contains("New") && !screen.lines[29].contains("Delete"))
        #expect(screen.text.contains("[disabled: read-only]"))
    }

    @Test func formValidatesBeforeAnythingIsCreated() {
        var registry = Registry()
        registry.origins = [OriginRecord(name: "vm", path: "/vm.img", snapshots: [SnapshotRecord(name: "b-snap", cowPath: "/b.cow", chunkSize: 16384)])]
        var form = SnapshotForm(origin: "vm", poolDirectory: "/p")
        for character in "b-snap" { form.type(character) }
        form.values[.cowSize] = "8K"
        #expect(form.validate(against: Self.status(), registry: registry) == nil)
        #expect(form.errors[.name]?.contains("already exists") == true)
        #expect(form.errors[.cowSize]?.contains("too small") == true)
        form.values[.name] = "new"
        form.values[.cowSize] = "1M"
        form.values[.chunkSize] = "3K"
        #expect(form.validate(against: Self.status(), registry: registry) == nil)
        #expect(form.errors[.chunkSize] != nil)
        form.values[.chunkSize] = "64K"
        let requests = form.validate(against: Self.status(), registry: registry)
        #expect(requests?.count == 1)
        #expect(requests?.first?.cowPath == "/p/new.cow")
        #expect(requests?.first?.chunkSize == 65536)
    }

    /// Several origins make a group: a snapshot per origin named `<name>-<origin>`, COW files in
    /// the typed directory (or the pool's), each name and path checked.
    @Test func formWithSeveralOriginsMakesAGroup() {
        var registry = Registry()
        registry.origins = [OriginRecord(name: "vm", path: "/vm.img", snapshots: [SnapshotRecord(name: "n-vm", cowPath: "/b.cow", chunkSize: 16384)]),
                            OriginRecord(name: "db", path: "/db.img")]
        let json = """
            {"pool": "/p", "origins": [
              {"name": "vm", "path": "/vm.img", "size": 67108864, "state": "active", "read_bytes": 0, "write_bytes": 0, "snapshots": []},
              {"name": "db", "path": "/db.img", "size": 8388608, "state": "active", "read_bytes": 0, "write_bytes": 0, "snapshots": []}]}
            """
        let status = try! JSONDecoder().decode(PoolStatus.self, from: Data(json.utf8))
        var form = SnapshotForm(origin: "vm db", poolDirectory: "/p")
        for character in "n" { form.type(character) }
        #expect(form.isGroup)
        #expect(form.validate(against: status, registry: registry) == nil)
        #expect(form.errors[.name] == "'n-vm' already exists")
        form.values[.name] = "nightly"
        form.values[.origin] = "vm, db, nope"
        #expect(form.validate(against: status, registry: registry) == nil)
        #expect(form.errors[.origin] == "no origin 'nope'")
        form.values[.origin] = "vm db vm"
        #expect(form.validate(against: status, registry: registry) == nil)
        #expect(form.errors[.origin] == "an origin is given twice")
        form.values[.origin] = "vm db"
        form.values[.cowPath] = "/cows"
        let requests = form.validate(against: status, registry: registry)
        #expect(requests?.map(\.name) == ["nightly-vm", "nightly-db"])
        #expect(requests?.map(\.origin) == ["vm", "db"])
        #expect(requests?.map(\.cowPath) == ["/cows/nightly-vm.cow", "/cows/nightly-db.cow"])
        let screen = TextScreen(rows: 30, columns: 100)
        FormRenderer.draw(form, on: screen)
        #expect(screen.text.contains("COW dir"))
        #expect(screen.text.contains("At one instant: nightly-vm, nightly-db"))
    }

    @Test func everyThemeFileParsesAndErrorsNameTheLine() throws {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Themes").path
        for name in ["default", "light", "monochrome", "high-contrast"] {
            let theme = try Theme.load(named: name, directories: [directory])
            #expect(theme.name == name)
            #expect(Element.allCases.allSatisfy { theme.styles[$0] != nil })
        }
        #expect(throws: ThemeError.self) { try Theme.parse(name: "bad", text: "title = purple black") }
        let error = try? Theme.parse(name: "bad", text: "\n\ntitle = red") as Theme?
        #expect(error == nil)
    }
}
