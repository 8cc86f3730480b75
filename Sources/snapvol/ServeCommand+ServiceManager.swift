import Controller

extension ServeCommand {
    /// The one-line state `systemctl status` shows (`STATUS=`): volumes, clients, and what needs
    /// an operator (origins and remap volumes inactive, snapshots no longer usable or suspect,
    /// the fullest COW device).
    static func serviceStatus(_ status: PoolStatus) -> String {
        let snapshots = status.origins.flatMap(\.snapshots)
        let volumes = status.origins.count + snapshots.count + status.remaps.count
        let clients = status.origins.compactMap(\.clients).reduce(0, +) + snapshots.compactMap(\.clients).reduce(0, +)
            + status.remaps.compactMap(\.clients).reduce(0, +)
        var line = "serving \(Wording.counted(volumes, "volume")), \(Wording.counted(clients, "NBD client"))"
        let inactive = status.origins.filter { $0.state != "active" }.map(\.name) + status.remaps.filter { $0.state != "active" }.map(\.name)
        if !inactive.isEmpty {
            line += "; " + Wording.counted(inactive.count, "volume") + " \(inactive.count == 1 ? "is" : "are") inactive: "
                + inactive.joined(separator: ", ")
        }
        let unusable = snapshots.filter { PoolHealth.unusableStates.contains($0.state) }
        if !unusable.isEmpty {
            line += "; " + Wording.counted(unusable.count, "snapshot") + " \(unusable.count == 1 ? "is" : "are") unusable: "
                + unusable.map { "\($0.name) (\($0.state))" }.joined(separator: ", ")
        }
        let suspect = snapshots.filter { $0.suspect != nil && !PoolHealth.unusableStates.contains($0.state) }
        if !suspect.isEmpty {
            line += "; " + Wording.counted(suspect.count, "snapshot") + " suspect (origin or COW changed outside snapvol): "
                + suspect.map(\.name).joined(separator: ", ")
        }
        if let fullest = snapshots.filter({ $0.state == "active" }).max(by: { $0.fillPercent < $1.fillPercent }) {
            line += "; fullest COW: \(fullest.name) \(Int(fullest.fillPercent.rounded()))%"
        }
        return line
    }

    /// Sends `WATCHDOG=1` every `interval` for as long as the controller answers a status query:
    /// a server whose controller hangs stops pinging, and the service manager restarts it.
    static func keepWatchdogFed(_ notifier: ServiceNotifier, every interval: Duration, controller: Controller) async {
        while !Task.isCancelled {
            _ = try? controller.status()
            notifier.notify("WATCHDOG=1")
            try? await Task.sleep(for: interval)
        }
    }
}
