import Foundation
import Testing
import TestSupport

/// `serve --tls-certificate/--tls-key [--tls-client-ca]`: every connection must start TLS
/// (NBD_OPT_STARTTLS) before anything else; real clients (libnbd's nbdinfo and nbdcopy, qemu)
/// work over it, clients without it are refused, and the bytes on the wire follow the protocol.
/// Certificates come from `openssl`. Always in CI.
@Suite(.mayBlock, .serialized, .enabled(if: Environment.canRun(commands: ["openssl", "nbdinfo", "nbdcopy", "qemu-io"])))
struct NBDTLSTests {
    /// A pool with origin `data` (8 MiB, its first MiB 0x41), and credentials beside it.
    private func pool() throws -> (TestPool, TLSCredentials) {
        let pool = try TestPool()
        try pool.ok("pool", "init")
        try pool.ok("origin", "add", "data", "--path", pool.file("data.img"), "--size", "8M")
        try pool.ok("io", "write", "data", "0", "1M", "--pattern", "0x41")
        let credentials = pool.file("tls")
        try FileManager.default.createDirectory(atPath: credentials, withIntermediateDirectories: true)
        return (pool, try TLSCredentials(in: credentials))
    }

    private func serve(_ pool: TestPool, _ tls: TLSCredentials, port: Int? = nil, clientCA: Bool = false) throws -> ServeProcess {
        var arguments = ["--tls-certificate", tls.serverCertificate, "--tls-key", tls.serverKey]
        if let port { arguments += ["--listen", ":\(port)"] }
        if clientCA { arguments += ["--tls-client-ca", tls.caCertificate] }
        return try ServeProcess(pool: pool, extra: arguments)
    }

    @Test func clientsWorkOverTLSAndPlainClientsAreRefused() throws {
        let (pool, tls) = try pool()
        let port = Int.random(in: 20000...60000)
        let server = try serve(pool, tls, port: port)
        #expect(try String(contentsOfFile: server.log, encoding: .utf8).contains("(TLS required), e.g. nbds://127.0.0.1:\(port)/data"))
        let uri = "nbds://localhost:\(port)/data?tls-certificates=\(tls.caOnly)"
        let info = try Shell.check(["nbdinfo", uri]).text
        #expect(info.contains("with TLS") && info.contains("8388608"), "\(info)")
        // qemu over TLS writes; nbdcopy over TLS reads the whole image back.
        try Shell.check(["qemu-io", "--object", "tls-creds-x509,id=tls0,dir=\(tls.caOnly),endpoint=client", "--image-opts",
                         "driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=\(port),export=data,tls-creds=tls0",
                         "-c", "write -P 0x44 1M 64K", "-c", "flush"])
        try Shell.check(["nbdcopy", uri, pool.file("copy.img")])
        var expected = [UInt8](repeating: 0, count: 8 << 20)
        expected.replaceSubrange(0..<(1 << 20), with: repeatElement(0x41, count: 1 << 20))
        expected.replaceSubrange((1 << 20)..<(1 << 20) + 65536, with: repeatElement(0x44, count: 65536))
        #expect(sameBytes([UInt8](FileManager.default.contents(atPath: pool.file("copy.img"))!), expected))
        // Without TLS, or trusting another CA, nothing is served.
        #expect(try Shell.run(["nbdinfo", "--size", "nbd://localhost:\(port)/data"]).status != 0)
        let elsewhere = try TemporaryDirectory()
        let stranger = try TLSCredentials(in: elsewhere.path)
        #expect(try Shell.run(["nbdinfo", "--size", "nbds://localhost:\(port)/data?tls-certificates=\(stranger.caOnly)"]).status != 0)
        #expect(server.stop() == 0)
    }

    /// SIGHUP reads the certificate and key again: a renewed certificate (here from another CA)
    /// serves new sessions without a restart; a broken file is refused and the last good
    /// certificate stays; the server never stops.
    @Test func sighupReloadsTheCertificate() throws {
        let (pool, tls) = try pool()
        let port = Int.random(in: 20000...60000)
        let server = try serve(pool, tls, port: port)
        let renewedDirectory = try TemporaryDirectory()
        let renewed = try TLSCredentials(in: renewedDirectory.path)
        func size(trusting ca: TLSCredentials) throws -> Shell.Result {
            try Shell.run(["nbdinfo", "--size", "nbds://localhost:\(port)/data?tls-certificates=\(ca.caOnly)"])
        }
        func hangUp(until line: String) throws {
            kill(server.processIdentifier, SIGHUP)
            try server.waitForLog(containing: line)
        }
        #expect(try size(trusting: tls).status == 0)
        #expect(try size(trusting: renewed).status != 0)
        for file in ["server-cert.pem", "server-key.pem"] {
            try Data(contentsOf: URL(fileURLWithPath: "\(renewed.directory)/\(file)")).write(to: URL(fileURLWithPath: "\(tls.directory)/\(file)"))
        }
        try hangUp(until: "reloaded the TLS certificate and key")
        #expect(try size(trusting: renewed).text == "\(8 << 20)\n")
        #expect(try size(trusting: tls).status != 0)
        try Data("not PEM".utf8).write(to: URL(fileURLWithPath: tls.serverCertificate))
        try hangUp(until: "ERROR: TLS reload failed, the old certificate stays: TLS certificate \(tls.serverCertificate)")
        #expect(try size(trusting: renewed).status == 0)
        #expect(server.isRunning)
        #expect(server.stop() == 0)
    }

    @Test func aClientCertificateIsRequiredWithAClientCA() throws {
        let (pool, tls) = try pool()
        let port = Int.random(in: 20000...60000)
        let server = try serve(pool, tls, port: port, clientCA: true)
        let without = try Shell.run(["nbdinfo", "--size", "nbds://localhost:\(port)/data?tls-certificates=\(tls.caOnly)"])
        #expect(without.status != 0)
        #expect(try Shell.check(["nbdinfo", "--size", "nbds://localhost:\(port)/data?tls-certificates=\(tls.withClientCertificate)"]).text
                == "8388608\n")
        #expect(server.stop() == 0)
    }

    /// On the wire (the Unix socket): before STARTTLS every option but ABORT is refused with
    /// `NBD_REP_ERR_TLS_REQD`; bytes sent in the clear right after STARTTLS (a GO riding with
    /// it) end the connection instead of selecting an export without TLS.
    @Test func optionsBeforeTLSAreRefusedAndCleartextAfterStartTLSCloses() throws {
        let (pool, tls) = try pool()
        let server = try serve(pool, tls)
        let go = NBDWire.go("data")
        let client = try RawSocket(path: server.socket)
        #expect(client.receive(18).count == 18)
        client.send(bigEndian(UInt32(3)))
        client.send(go)
        #expect(client.receive(20) == NBDWire.optionReply(7, type: (1 << 31) + 5))
        client.send(NBDWire.option(3, []))
        #expect(client.receive(20) == NBDWire.optionReply(3, type: (1 << 31) + 5))
        client.send(NBDWire.option(5, []) + go)
        #expect(client.receive(20) == NBDWire.optionReply(5, type: 1))
        #expect(client.closedByPeer())
        // The old EXPORT_NAME has no error reply: the connection ends.
        let old = try RawSocket(path: server.socket)
        _ = old.receive(18)
        old.send(bigEndian(UInt32(3)))
        old.send(NBDWire.option(1, Array("data".utf8)))
        #expect(old.closedByPeer())
        #expect(server.stop() == 0)
    }

    @Test func unusableCredentialsAreRefusedInOneLine() throws {
        let (pool, tls) = try pool()
        let mismatched = try pool.run("serve", "--tls-certificate", tls.serverCertificate, "--tls-key", tls.clientKey)
        #expect(mismatched.status == 1)
        #expect(mismatched.stderr.hasPrefix("snapvol: error: TLS private key \(tls.clientKey): cannot be used with the certificate"))
        let missing = try pool.run("serve", "--tls-certificate", pool.file("none.pem"), "--tls-key", tls.serverKey)
        #expect(missing.status == 1 && missing.stderr == "snapvol: error: TLS certificate \(pool.file("none.pem")): cannot be read (No such file or directory)\n")
        let alone = try pool.run("serve", "--tls-key", tls.serverKey)
        #expect(alone.status == 1 && alone.stderr == "snapvol: error: --tls-key and --tls-client-ca need --tls-certificate\n")
        for result in [mismatched, missing, alone] { #expect(result.stderr.split(separator: "\n").count == 1) }
    }
}
