import Foundation
import Testing
import TestSupport

/// Prometheus metrics: `status --prometheus` (for node_exporter's textfile collector) and
/// `serve --metrics-listen`, scraped by a real Prometheus server.
@Suite(.mayBlock) struct MetricsTests {
    static func pool() throws -> TestPool { try TestPool.withVM(snapshot: "nightly", "--cow-size", "4M") }

    /// Samples by series (`name{labels}` as printed).
    static func samples(_ exposition: String) -> [String: Double] {
        var samples: [String: Double] = [:]
        for line in exposition.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            samples[String(line[..<space])] = value
        }
        return samples
    }

    static func snapshots(_ pool: TestPool) throws -> [[String: Any]] {
        let json = try #require(try JSONSerialization.jsonObject(with: pool.ok("status", "--json").stdout) as? [String: Any])
        let origins = try #require(json["origins"] as? [[String: Any]])
        return origins.flatMap { $0["snapshots"] as? [[String: Any]] ?? [] }
    }

    @Test func statusPrometheusSaysWhatStatusJSONSays() throws {
        let pool = try Self.pool()
        // A COW too small for what is written: the snapshot turns invalid.
        try pool.ok("snapshot", "create", "small", "--origin", "vm", "--cow", pool.file("small.cow"), "--cow-size", "256K")
        try pool.ok("io", "write", "vm", "0", "2M", "--pattern", "0x5a")
        // Written outside snapvol meanwhile: the snapshot still valid is marked suspect.
        let image = try FileHandle(forWritingTo: URL(fileURLWithPath: pool.file("vm.img")))
        try image.write(contentsOf: [0x01])
        try image.close()
        let exposition = try pool.ok("status", "--prometheus").text
        let samples = Self.samples(exposition)
        let snapshots = try Self.snapshots(pool)
        #expect(snapshots.count == 2)
        for snapshot in snapshots {
            let name = try #require(snapshot["name"] as? String)
            let labels = "{snapshot=\"\(name)\",origin=\"vm\"}"
            #expect(samples["snapvol_snapshot_exceptions" + labels] == (snapshot["exceptions"] as? Double))
            #expect(samples["snapvol_snapshot_cow_used_bytes" + labels] == (snapshot["cow_used_bytes"] as? Double))
            #expect(samples["snapvol_snapshot_cow_size_bytes" + labels] == (snapshot["cow_total_bytes"] as? Double))
            let state = try #require(snapshot["state"] as? String)
            let states = samples.filter { $0.key.hasPrefix("snapvol_snapshot_state{snapshot=\"\(name)\",") }
            #expect(states.count == 6)
            #expect(states.filter { $0.value == 1 }.map(\.key) == ["snapvol_snapshot_state{snapshot=\"\(name)\",origin=\"vm\",state=\"\(state)\"}"])
            // An invalid snapshot is lost already: it is not marked on top.
            #expect((snapshot["suspect"] is String) == (state != "invalid"))
            #expect(samples["snapvol_snapshot_suspect" + labels] == (state == "invalid" ? 0 : 1))
        }
        #expect(snapshots.contains { $0["state"] as? String == "invalid" })
        #expect(samples["snapvol_snapshot_exceptions{snapshot=\"nightly\",origin=\"vm\"}"] == 128)
        #expect(samples["snapvol_origin_size_bytes{origin=\"vm\"}"] == Double(8 << 20))
        #expect(samples["snapvol_origin_up{origin=\"vm\"}"] == 1)
        let created = try #require(snapshots.first { $0["name"] as? String == "nightly" }?["created"] as? String)
        #expect(samples["snapvol_snapshot_created_timestamp_seconds{snapshot=\"nightly\",origin=\"vm\"}"]
                == (try? Date(created, strategy: .iso8601))?.timeIntervalSince1970)
        if Environment.canRun(commands: ["promtool"]) {
            let lint = try Shell.run(["promtool", "check", "metrics"], input: Data(exposition.utf8))
            #expect(lint.status == 0, "\(lint.stdout) \(lint.stderr)")
        }
        let both = try pool.run("status", "--prometheus", "--json")
        #expect(both.status == 64)
        #expect(both.stderr.hasPrefix("snapvol: error: --json, --dm and --prometheus are exclusive: give one"))
    }

    @Test(.enabled(if: Environment.canRun(commands: ["prometheus", "curl"])))
    func aPrometheusServerScrapesServe() throws {
        let pool = try Self.pool()
        let server = try ServeProcess(pool: pool, extra: ["--metrics-listen", ":0"])
        let port = try #require(try Self.metricsPort(server))
        let url = "http://127.0.0.1:\(port)"
        #expect(try Shell.check(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url + "/"]).text == "404")
        #expect(try Shell.check(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", url + "/metrics"]).text == "405")
        #expect(try Shell.check(["curl", "-sI", url + "/metrics"]).text.contains("Content-Type: text/plain; version=0.0.4"))

        let directory = try TemporaryDirectory(prefix: "prometheus")
        let prometheus = try PrometheusServer(scraping: "127.0.0.1:\(port)", directory: directory)
        #expect(try prometheus.await("up{job=\"snapvol\"}", within: 60) { $0 == 1 } == 1)
        #expect(try prometheus.await("snapvol_snapshot_exceptions{snapshot=\"nightly\"}", within: 10) { $0 == 0 } == 0)
        let (client, go) = try RawSocket.transmitting(server.socket, export: "vm")
        #expect(go.count == 86)
        #expect(try prometheus.await("snapvol_volume_clients{volume=\"vm\"}", within: 10) { $0 == 1 } == 1)
        try pool.ok("io", "write", "vm", "0", "2M", "--pattern", "0x5a")
        #expect(try prometheus.await("snapvol_snapshot_exceptions{snapshot=\"nightly\"}", within: 10) { $0 == 128 } == 128)
        #expect(try prometheus.await("snapvol_origin_written_bytes_total{origin=\"vm\"}", within: 10) { $0 >= Double(2 << 20) } != nil)
        // `io write` sends 1 MiB at a time: two write requests, for IOPS dashboards.
        #expect(try prometheus.await("snapvol_origin_writes_total{origin=\"vm\"}", within: 10) { $0 >= 2 } != nil)
        let used = try #require(try Self.snapshots(pool).first?["cow_used_bytes"] as? Double)
        #expect(try prometheus.await("snapvol_snapshot_cow_used_bytes{snapshot=\"nightly\"}", within: 10) { $0 == used } == used)
        _ = client
        #expect(server.stop() == 0)
    }

    /// A bad address or a port in use is refused with one line, and the pool is left as it was:
    /// no socket stays behind.
    @Test func unusableMetricsAddressesAreRefused() throws {
        let pool = try Self.pool()
        let invalid = try pool.run("serve", "--metrics-listen", "9477")
        #expect(invalid.status == 1)
        #expect(invalid.stderr == "snapvol: error: invalid --metrics-listen '9477': use HOST:PORT or :PORT\n")

        let holder = try Self.pool()
        let server = try ServeProcess(pool: holder, extra: ["--metrics-listen", ":0"])
        let port = try #require(try Self.metricsPort(server))
        let taken = try pool.run("serve", "--metrics-listen", "127.0.0.1:\(port)")
        #expect(taken.status == 1)
        #expect(taken.stderr == "snapvol: error: --metrics-listen 127.0.0.1:\(port): cannot listen: Address already in use\n")
        #expect(!FileManager.default.fileExists(atPath: "\(pool.path)/nbd.sock"))
        #expect(!FileManager.default.fileExists(atPath: "\(pool.path)/control.sock"))
        #expect(try pool.run("status").status == 0, "the pool's lock was released")
        #expect(server.stop() == 0)
    }

    /// The port `serve` printed in "metrics at http://HOST:PORT/metrics".
    static func metricsPort(_ server: ServeProcess) throws -> Int? {
        let log = try String(contentsOfFile: server.log, encoding: .utf8)
        guard let range = log.range(of: #"metrics at http://[^ ]*:([0-9]+)/metrics"#, options: .regularExpression) else { return nil }
        let match = log[range]
        return Int(match[match.index(after: match.lastIndex(of: ":")!)...].dropLast("/metrics".count))
    }
}
