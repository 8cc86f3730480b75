import Foundation

/// A real Prometheus server (Debian's `prometheus`) scraping one target every second, for tests
/// of a metrics endpoint; its data lives in `directory` and it stops with the object.
public final class PrometheusServer {
    private let process: Process
    public let port: Int

    public init(scraping target: String, directory: TemporaryDirectory) throws {
        port = try freeTCPPort()
        let config = directory.file("prometheus.yml")
        try """
        global: {scrape_interval: 1s, scrape_timeout: 1s}
        scrape_configs:
          - job_name: snapvol
            static_configs: [{targets: ['\(target)']}]
        """.write(toFile: config, atomically: true, encoding: .utf8)
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/prometheus")
        process.arguments = ["--config.file=\(config)", "--storage.tsdb.path=\(directory.file("tsdb"))",
                             "--web.listen-address=127.0.0.1:\(port)"]
        let log = directory.file("prometheus.log")
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.standardOutput = output
        process.standardError = output
        try process.run()
    }

    deinit {
        process.terminate()
        process.waitUntilExit()
    }

    /// The value of the instant vector `query` when it has exactly one sample, else nil (not
    /// scraped yet, or no such series).
    public func value(of query: String) throws -> Double? {
        var components = URLComponents(string: "http://127.0.0.1:\(port)/api/v1/query")!
        components.queryItems = [URLQueryItem(name: "query", value: query)]
        let answer = try Shell.run(["curl", "-sf", components.url!.absoluteString])
        guard answer.status == 0,
              let json = try JSONSerialization.jsonObject(with: answer.stdout) as? [String: Any],
              let data = json["data"] as? [String: Any], let result = data["result"] as? [[String: Any]], result.count == 1,
              let sample = result[0]["value"] as? [Any], sample.count == 2, let text = sample[1] as? String else { return nil }
        return Double(text)
    }

    /// Polls `query` until `accept` takes its value (returned) or `seconds` pass (nil).
    public func await(_ query: String, within seconds: Double, until accept: (Double) -> Bool) throws -> Double? {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let value = try value(of: query), accept(value) { return value }
            Thread.sleep(forTimeInterval: 0.25)
        }
        return nil
    }
}

/// A TCP port on the loopback interface that was free a moment ago (bound to port 0, then
/// released): for servers that cannot be told to pick one themselves.
public func freeTCPPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    guard fd >= 0, bound else { throw ServeFailure(log: "no free TCP port: errno \(errno)") }
    return Int(UInt16(bigEndian: address.sin_port))
}
