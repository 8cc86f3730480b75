import Controller

/// What a process does for the pool while it holds it, besides its own work (a TUI, the demo,
/// any command): it answers on the control socket, so commands run elsewhere are forwarded to
/// it, and it applies the pool's autoextend settings once a second, so a COW that other
/// processes' writes fill through it grows as under `serve`. `serve` has its own duties
/// (`SideServers`, `ServeCommand.watch`), which also feed its service manager.
enum PoolHolding {
    /// Runs `body` with those duties; they end, the autoextender's last step included, before
    /// this returns, so nothing extends a COW while the controller closes.
    static func whileHolding<T>(_ controller: Controller, as role: PoolOwner, _ body: () async throws -> T) async throws -> T {
        let autoextend = Task { await Autoextender.run(controller) { report(controller, $0, on: role) } }
        do {
            let result = try await ControlServer.whileRunning(controller, as: role, body)
            await stop(autoextend)
            return result
        } catch {
            await stop(autoextend)
            throw error
        }
    }

    private static func stop(_ task: Task<Void, Never>) async {
        task.cancel()
        await task.value
    }

    /// Extensions and their failures go to the pool's events (a TUI shows them in its event
    /// pane); a command also says them on standard error. Fill warnings need no event: `status`
    /// and the TUI's bars show them.
    private static func report(_ controller: Controller, _ report: Autoextender.Report, on role: PoolOwner) {
        switch report {
        case .extended(let text):
            controller.events.record(text)
            if role == .command { printNotice(text) }
        case .failed(let text):
            controller.events.record(text, alarm: true)
            if role == .command { printNotice(text, level: .error) }
        case .warning, .alarm: break
        }
    }
}
