import Foundation

/// A throwaway certificate authority with a server and a client certificate (P-256 keys, valid
/// for `localhost` and 127.0.0.1, two days), made with `openssl` for TLS tests. Client
/// directories are laid out as libnbd's `tls-certificates` and qemu's `tls-creds-x509` expect:
/// `ca-cert.pem`, plus `client-cert.pem` and `client-key.pem` in `withClientCertificate`.
public struct TLSCredentials {
    public let directory: String
    public var caCertificate: String { "\(directory)/ca-cert.pem" }
    public var serverCertificate: String { "\(directory)/server-cert.pem" }
    public var serverKey: String { "\(directory)/server-key.pem" }
    public var clientKey: String { "\(directory)/client-key.pem" }
    /// A client directory holding only the CA certificate.
    public var caOnly: String { "\(directory)/ca-only" }
    /// A client directory holding the CA certificate and a client certificate and key.
    public var withClientCertificate: String { "\(directory)/with-client" }

    public init(in directory: String) throws {
        self.directory = directory
        try Self.openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                          "-keyout", "\(directory)/ca-key.pem", "-out", caCertificate, "-days", "2", "-subj", "/CN=snapvol test CA",
                          "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        for (who, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
            try Self.openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                              "-keyout", "\(directory)/\(who)-key.pem", "-out", "\(directory)/\(who).csr", "-subj", "/CN=localhost"])
            let extensions = "\(directory)/\(who).ext"
            try Data("""
                subjectAltName=DNS:localhost,IP:127.0.0.1
                extendedKeyUsage=\(usage)
                keyUsage=critical,digitalSignature
                basicConstraints=CA:FALSE

                """.utf8).write(to: URL(fileURLWithPath: extensions))
            try Self.openssl(["x509", "-req", "-in", "\(directory)/\(who).csr", "-CA", caCertificate, "-CAkey", "\(directory)/ca-key.pem",
                              "-CAcreateserial", "-out", "\(directory)/\(who)-cert.pem", "-days", "2", "-extfile", extensions])
        }
        let files = FileManager.default
        for (client, withCertificate) in [(caOnly, false), (withClientCertificate, true)] {
            try files.createDirectory(atPath: client, withIntermediateDirectories: true)
            try files.copyItem(atPath: caCertificate, toPath: "\(client)/ca-cert.pem")
            guard withCertificate else { continue }
            try files.copyItem(atPath: "\(directory)/client-cert.pem", toPath: "\(client)/client-cert.pem")
            try files.copyItem(atPath: clientKey, toPath: "\(client)/client-key.pem")
        }
    }

    private static func openssl(_ arguments: [String]) throws {
        try Shell.check(["openssl"] + arguments)
    }
}
