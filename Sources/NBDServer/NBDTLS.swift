#if canImport(Glibc)
import Glibc
#endif
import NIOSSL
import Synchronization

/// TLS for the NBD server (`NBD_OPT_STARTTLS`): the server's certificate chain and key, and
/// optionally the CA client certificates must chain to. A server given one requires TLS on every
/// connection: before the handshake only STARTTLS and ABORT are answered (others get
/// `NBD_REP_ERR_TLS_REQD`, the old EXPORT_NAME a closed connection), as qemu-nbd with TLS
/// credentials does. `reload` reads the same files again (a renewed certificate): sessions
/// that start TLS afterwards use the new one, those already encrypted keep theirs.
///
/// Invariant: `context` was always built from the files as they were when read; a file that is
/// missing or not PEM is refused, with its path in the error, and a refused reload keeps the
/// context it had.
public final class NBDTLS: Sendable {
    private let certificate: String
    private let key: String
    private let clientCA: String?
    private let current: Mutex<NIOSSLContext>

    public init(certificate: String, key: String, clientCA: String? = nil) throws(NBDTLSError) {
        self.certificate = certificate
        self.key = key
        self.clientCA = clientCA
        current = Mutex(try Self.makeContext(certificate: certificate, key: key, clientCA: clientCA))
    }

    /// The context a session starting TLS now uses.
    var context: NIOSSLContext { current.withLock { $0 } }

    /// Reads the certificate, key and client CA files again; on a refusal the old ones stay.
    public func reload() throws(NBDTLSError) {
        let context = try Self.makeContext(certificate: certificate, key: key, clientCA: clientCA)
        current.withLock { $0 = context }
    }

    private static func makeContext(certificate: String, key: String, clientCA: String?) throws(NBDTLSError) -> NIOSSLContext {
        let chain = try load(certificate, "certificate") { try NIOSSLCertificate.fromPEMFile($0) }
        if chain.isEmpty { throw NBDTLSError(path: certificate, what: "certificate", reason: "no PEM certificate in it") }
        let privateKey = try load(key, "private key") { try NIOSSLPrivateKey(file: $0, format: .pem) }
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) },
                                                                    privateKey: .privateKey(privateKey))
        configuration.minimumTLSVersion = .tlsv12
        if let clientCA {
            let roots = try load(clientCA, "client CA") { try NIOSSLCertificate.fromPEMFile($0) }
            if roots.isEmpty { throw NBDTLSError(path: clientCA, what: "client CA", reason: "no PEM certificate in it") }
            configuration.trustRoots = .certificates(roots)
            configuration.certificateVerification = .noHostnameVerification
        }
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw NBDTLSError(path: key, what: "private key", reason: "cannot be used with the certificate \(certificate) (\(error))")
        }
    }

    private static func load<T>(_ path: String, _ what: String, _ body: (String) throws -> T) throws(NBDTLSError) -> T {
        if access(path, R_OK) != 0 {
            throw NBDTLSError(path: path, what: what, reason: "cannot be read (\(String(cString: strerror(errno))))")
        }
        do {
            return try body(path)
        } catch {
            throw NBDTLSError(path: path, what: what, reason: "not a readable PEM file (\(error))")
        }
    }
}

/// A TLS file that cannot be used; the description is one line naming it.
public struct NBDTLSError: Error, CustomStringConvertible {
    public let path: String
    public let what: String
    public let reason: String
    public var description: String { "TLS \(what) \(path): \(reason)" }
}
