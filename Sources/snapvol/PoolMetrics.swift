import Controller
import Prometheus

/// A pool's figures in Prometheus' text exposition format, built afresh from one `PoolStatus`
/// (so a volume removed since the last scrape leaves no stale series behind). Served by
/// `serve --metrics-listen` at `/metrics`, printed by `status --prometheus` (for node_exporter's
/// textfile collector).
///
/// Invariant: every family has one fixed set of label names, and a state family has one series
/// per possible state, 1 for the current one and 0 for the others, so an alert on a state
/// never meets an absent series.
enum PoolMetrics {
    static let snapshotStates = ["active", "invalid", "overflow", "merging", "merge-failed", "inactive"]
    static let remapStates = ["active", "invalid", "inactive"]

    /// The exposition of `status`.
    static func exposition(of status: PoolStatus) -> String {
        let registry = PrometheusCollectorRegistry()
        for origin in status.origins { record(origin, in: registry) }
        for snapshot in status.origins.flatMap(\.snapshots) { record(snapshot, in: registry) }
        for remap in status.remaps { record(remap, in: registry) }
        return registry.emitToString()
    }

    private static func record(_ origin: OriginStatus, in registry: PrometheusCollectorRegistry) {
        let labels = [("origin", origin.name)]
        set(registry, "origin", "up", "", "1 if the origin is active, 0 if its device could not be opened or it is held back (a merge that cannot go on)", labels, origin.state == "active" ? 1 : 0)
        set(registry, "origin", "size", "bytes", "The origin's size", labels, Double(origin.size))
        add(registry, "origin", "read_bytes", "Bytes read from the origin by this process", labels, origin.readBytes)
        add(registry, "origin", "written_bytes", "Bytes written to the origin by this process", labels, origin.writeBytes)
        requests(registry, "origin", labels, reads: origin.readOps, writes: origin.writeOps)
        if let writes = origin.queuedWrites, let bytes = origin.queuedBytes {
            set(registry, "origin", "queued_writes", "", "Writes acknowledged and still waiting for their copies", labels, Double(writes))
            set(registry, "origin", "queued", "bytes", "Bytes of those queued writes", labels, Double(bytes))
        }
        clients(registry, origin.name, origin.clients)
    }

    private static func record(_ snapshot: SnapshotReport, in registry: PrometheusCollectorRegistry) {
        let labels = [("snapshot", snapshot.name), ("origin", snapshot.origin)]
        states(registry, "snapshot", labels, snapshotStates, current: snapshot.state)
        set(registry, "snapshot", "suspect", "", "1 if the snapshot's origin or COW was found changed outside snapvol (snapshot trust clears it), else 0",
            labels, snapshot.suspect == nil ? 0 : 1)
        set(registry, "snapshot", "exceptions", "", "Chunks the snapshot holds in its COW device", labels, Double(snapshot.exceptions))
        set(registry, "snapshot", "pending_copies", "", "Chunks being copied into the COW device", labels, Double(snapshot.pendingCopies))
        set(registry, "snapshot", "cow_used", "bytes", "Bytes of the COW device in use (data and metadata)", labels, Double(snapshot.cowUsedBytes))
        set(registry, "snapshot", "cow_size", "bytes", "The COW device's size", labels, Double(snapshot.cowTotalBytes))
        set(registry, "snapshot", "chunk_size", "bytes", "The snapshot's chunk size", labels, Double(snapshot.chunkSize))
        if let created = snapshot.createdDate {
            set(registry, "snapshot", "created_timestamp", "seconds", "When the snapshot was taken, in seconds since the epoch",
                labels, created.timeIntervalSince1970)
        }
        add(registry, "snapshot", "read_bytes", "Bytes read from the snapshot by this process", labels, snapshot.readBytes)
        add(registry, "snapshot", "written_bytes", "Bytes written to the snapshot by this process", labels, snapshot.writeBytes)
        requests(registry, "snapshot", labels, reads: snapshot.readOps, writes: snapshot.writeOps)
        if let table = snapshot.table {
            set(registry, "snapshot", "table_resident", "bytes", "Bytes of the exception table in memory", labels, Double(table.residentBytes))
            if let budget = table.budgetBytes {
                set(registry, "snapshot", "table_budget", "bytes", "The exception table's memory budget (--exception-cache)", labels, Double(budget))
            }
            add(registry, "snapshot", "table_lookups", "Exception table lookups", labels, UInt64(table.lookups))
            add(registry, "snapshot", "table_area_reads", "Metadata areas read back because the table had evicted them", labels, UInt64(table.areaReads))
        }
        clients(registry, snapshot.name, snapshot.clients)
    }

    private static func record(_ remap: RemapReport, in registry: PrometheusCollectorRegistry) {
        let labels = [("remap", remap.name)]
        states(registry, "remap", labels, remapStates, current: remap.state)
        set(registry, "remap", "remapped_chunks", "", "Chunks remapped onto the spare area", labels, Double(remap.remapped))
        set(registry, "remap", "pending_chunks", "", "Chunks being copied onto the spare area", labels, Double(remap.pending))
        set(registry, "remap", "spare_used", "bytes", "Bytes of the spare area in use", labels, Double(remap.spareUsedBytes))
        set(registry, "remap", "spare_size", "bytes", "The spare area's size", labels, Double(remap.spareTotalBytes))
        clients(registry, remap.name, remap.clients)
    }

    /// `snapvol_<subsystem>_reads_total` and `_writes_total`: requests, for IOPS (`rate()`).
    private static func requests(_ registry: PrometheusCollectorRegistry, _ subsystem: String, _ labels: [(String, String)],
                                 reads: UInt64?, writes: UInt64?) {
        if let reads { add(registry, subsystem, "reads", "Read requests served by this process", labels, reads) }
        if let writes { add(registry, subsystem, "writes", "Write requests served by this process", labels, writes) }
    }

    /// `snapvol_volume_clients`: known only while `serve` owns the pool.
    private static func clients(_ registry: PrometheusCollectorRegistry, _ volume: String, _ clients: Int?) {
        guard let clients else { return }
        set(registry, "volume", "clients", "", "NBD clients that have the volume open", [("volume", volume)], Double(clients))
    }

    private static func states(_ registry: PrometheusCollectorRegistry, _ subsystem: String, _ labels: [(String, String)],
                               _ all: [String], current: String) {
        let help = "1 for the \(subsystem)'s current state (" + all.joined(separator: ", ") + "), 0 for the others"
        for state in all {
            set(registry, subsystem, "state", "", help, labels + [("state", state)], state == current ? 1 : 0)
        }
    }

    private static func set(_ registry: PrometheusCollectorRegistry, _ subsystem: String, _ name: String, _ unit: String,
                            _ help: String, _ labels: [(String, String)], _ value: Double) {
        let descriptor = MetricNameDescriptor(namespace: "snapvol", subsystem: subsystem, metricName: name, unitName: unit, helpText: help)
        registry.makeGauge(descriptor: descriptor, labels: labels).set(value)
    }

    private static func add(_ registry: PrometheusCollectorRegistry, _ subsystem: String, _ name: String,
                            _ help: String, _ labels: [(String, String)], _ value: UInt64) {
        let descriptor = MetricNameDescriptor(namespace: "snapvol", subsystem: subsystem, metricName: name, unitName: "total", helpText: help)
        registry.makeCounter(descriptor: descriptor, labels: labels).increment(by: Int64(clamping: value))
    }
}
