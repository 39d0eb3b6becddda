import CoveCrypto
import Foundation
import Testing

/// A root → intermediate → leaf chain made entirely by the `openssl` CLI (P-384, SHA-384), leaf valid
/// for one day only, so the "expired" case is a check time two days out.
struct CLIChain {
  var root: X509Certificate
  var intermediate: X509Certificate
  var leaf: X509Certificate
  var chain: [X509Certificate] { [root, intermediate, leaf] }

  static func make() throws -> CLIChain {
    let directory = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    func openssl(_ arguments: [String]) throws {
      let result = try run("openssl", arguments, in: directory)
      guard result.status == 0 else { throw CLIError(message: "openssl \(arguments): \(result.errorText)") }
    }
    for name in ["root", "int", "leaf"] {
      try openssl([
        "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", "\(name).key",
      ])
    }
    try openssl([
      "req", "-x509", "-new", "-key", "root.key", "-sha384", "-days", "3650", "-subj",
      "/CN=CLI Root CA/O=Cove",
      "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
      "-out", "root.pem",
    ])
    try write(
      """
      basicConstraints=critical,CA:TRUE,pathlen:0
      keyUsage=critical,keyCertSign,cRLSign
      subjectKeyIdentifier=hash
      authorityKeyIdentifier=keyid

      """, to: directory.appendingPathComponent("int.ext"))
    try write(
      """
      basicConstraints=critical,CA:FALSE
      keyUsage=critical,digitalSignature
      subjectKeyIdentifier=hash
      authorityKeyIdentifier=keyid

      """, to: directory.appendingPathComponent("leaf.ext"))
    try openssl([
      "req", "-new", "-key", "int.key", "-subj", "/CN=CLI Intermediate CA/O=Cove", "-out", "int.csr",
    ])
    try openssl([
      "x509", "-req", "-in", "int.csr", "-CA", "root.pem", "-CAkey", "root.key", "-set_serial", "2",
      "-sha384",
      "-days", "3650", "-extfile", "int.ext", "-out", "int.pem",
    ])
    try openssl(["req", "-new", "-key", "leaf.key", "-subj", "/CN=CLI Device/O=Cove", "-out", "leaf.csr"])
    try openssl([
      "x509", "-req", "-in", "leaf.csr", "-CA", "int.pem", "-CAkey", "int.key", "-set_serial", "3", "-sha384",
      "-days", "1", "-extfile", "leaf.ext", "-out", "leaf.pem",
    ])
    func load(_ name: String) throws -> X509Certificate {
      let pem = String(decoding: try read(directory.appendingPathComponent(name)), as: UTF8.self)
      return try #require(try X509Certificate.certificates(fromPEM: pem).first)
    }
    return CLIChain(root: try load("root.pem"), intermediate: try load("int.pem"), leaf: try load("leaf.pem"))
  }

  struct CLIError: Error { var message: String }
}

@Suite("X.509 certificates and chain verification")
struct X509Tests {
  static let now = Int64(Date().timeIntervalSince1970)
  static let day: Int64 = 86_400

  func expectFailure(
    _ code: CertificateVerificationError.Code, depth: Int? = nil, anchors: [X509Certificate],
    chain: [X509Certificate], at time: Int64? = nil, sourceLocation: SourceLocation = #_sourceLocation
  ) {
    let error = #expect(throws: CertificateVerificationError.self, sourceLocation: sourceLocation) {
      try CertificateChainVerifier(trustAnchors: anchors).verify(rootToLeaf: chain, at: time)
    }
    #expect(error?.code == code, "\(String(describing: error))", sourceLocation: sourceLocation)
    if let depth { #expect(error?.depth == depth, sourceLocation: sourceLocation) }
  }

  @Test func cliChainVerifies() throws {
    let cli = try CLIChain.make()
    #expect(cli.root.subject == "CN=CLI Root CA,O=Cove")
    #expect(cli.leaf.issuer == "CN=CLI Intermediate CA,O=Cove")
    #expect(cli.root.isCertificateAuthority)
    #expect(cli.intermediate.isCertificateAuthority)
    #expect(!cli.leaf.isCertificateAuthority)
    #expect(cli.leaf.notAfter - cli.leaf.notBefore == Self.day)
    let path = try CertificateChainVerifier(trustAnchors: [cli.root]).verify(rootToLeaf: cli.chain)
    #expect(path == cli.chain)
    // chain[0] issued by an anchor rather than being one.
    let shorter = try CertificateChainVerifier(trustAnchors: [cli.root]).verify(
      rootToLeaf: [cli.intermediate, cli.leaf])
    #expect(shorter == cli.chain)
    // A non-self-signed anchor terminates the path too (partial chain).
    let partial = try CertificateChainVerifier(trustAnchors: [cli.intermediate]).verify(rootToLeaf: [cli.leaf]
    )
    #expect(partial == [cli.intermediate, cli.leaf])
    #expect(try cli.leaf.publicKey().curve == .p384)
  }

  @Test func tamperedSignatureIsBadSignature() throws {
    let cli = try CLIChain.make()
    var der = cli.leaf.der
    der[der.count - 1] ^= 0x01  // the last byte of the ECDSA s value
    let tampered = try X509Certificate(der: der)
    expectFailure(
      .badSignature, depth: 0, anchors: [cli.root], chain: [cli.root, cli.intermediate, tampered])
  }

  @Test func wrongRootIsUntrusted() throws {
    let cli = try CLIChain.make()
    let other = try TestPKI.generate(entropy: SeededEntropy(seed: 9), notBefore: Self.now - Self.day)
    expectFailure(.untrustedRoot, anchors: [other.root], chain: cli.chain)
    expectFailure(.untrustedRoot, anchors: [], chain: cli.chain)
  }

  @Test func expiredAndNotYetValid() throws {
    let cli = try CLIChain.make()
    expectFailure(.expired, depth: 0, anchors: [cli.root], chain: cli.chain, at: Self.now + 3 * Self.day)
    expectFailure(.notYetValid, anchors: [cli.root], chain: cli.chain, at: Self.now - 3 * Self.day)
  }

  @Test func emptyAndMisorderedChains() throws {
    let cli = try CLIChain.make()
    expectFailure(.emptyChain, anchors: [cli.root], chain: [])
    expectFailure(.malformed, anchors: [cli.root], chain: [cli.root, cli.leaf, cli.intermediate])
  }

  // Negative cases built with CertificateBuilder.
  struct Fixture {
    var rootKey: ECPrivateKey
    var root: X509Certificate
    let entropy = SeededEntropy(seed: 77)
    let start = X509Tests.now - X509Tests.day

    init() throws {
      rootKey = try ECPrivateKey(curve: .p384, entropy: entropy)
      var builder = CertificateBuilder(
        commonName: "Neg Root", publicKey: rootKey.publicKey, serialNumber: [1], notBefore: start,
        notAfter: start + 30 * X509Tests.day)
      builder.isCertificateAuthority = true
      builder.keyUsage = [.keyCertSign, .cRLSign]
      root = try builder.selfSigned(with: rootKey)
    }

    func builder(_ name: String, key: ECPrivateKey, serial: UInt8) -> CertificateBuilder {
      CertificateBuilder(
        commonName: name, publicKey: key.publicKey, serialNumber: [serial], notBefore: start,
        notAfter: start + 30 * X509Tests.day)
    }

    func intermediate(isCA: Bool?, keyUsage: CertificateBuilder.KeyUsage?, pathLength: Int? = nil) throws
      -> (ECPrivateKey, X509Certificate)
    {
      let key = try ECPrivateKey(curve: .p384, entropy: entropy)
      var b = builder("Neg Intermediate", key: key, serial: 2)
      b.isCertificateAuthority = isCA
      b.keyUsage = keyUsage
      b.pathLengthConstraint = pathLength
      return (key, try b.issued(by: root, issuerKey: rootKey))
    }

    func leaf(
      under issuer: X509Certificate, key issuerKey: ECPrivateKey,
      keyUsage: CertificateBuilder.KeyUsage? = [.digitalSignature],
      isCA: Bool? = false
    ) throws -> (ECPrivateKey, X509Certificate) {
      let key = try ECPrivateKey(curve: .p384, entropy: entropy)
      var b = builder("Neg Leaf", key: key, serial: 3)
      b.isCertificateAuthority = isCA
      b.keyUsage = keyUsage
      return (key, try b.issued(by: issuer, issuerKey: issuerKey))
    }
  }

  @Test func intermediateWithoutCAIsRejected() throws {
    let f = try Fixture()
    let (intermediateKey, intermediate) = try f.intermediate(isCA: false, keyUsage: nil)
    let (_, leaf) = try f.leaf(under: intermediate, key: intermediateKey)
    expectFailure(
      .notACertificateAuthority, depth: 1, anchors: [f.root], chain: [f.root, intermediate, leaf])
    // No basicConstraints at all but keyCertSign: OpenSSL alone would accept it; Cove does not.
    let (key2, noBC) = try f.intermediate(isCA: nil, keyUsage: [.keyCertSign])
    let (_, leaf2) = try f.leaf(under: noBC, key: key2)
    expectFailure(.notACertificateAuthority, depth: 1, anchors: [f.root], chain: [f.root, noBC, leaf2])
  }

  @Test func keyUsageIsEnforced() throws {
    let f = try Fixture()
    let (key, noCertSign) = try f.intermediate(isCA: true, keyUsage: [.digitalSignature])
    let (_, leaf) = try f.leaf(under: noCertSign, key: key)
    expectFailure(.keyUsage, depth: 1, anchors: [f.root], chain: [f.root, noCertSign, leaf])

    let (goodKey, good) = try f.intermediate(isCA: true, keyUsage: [.keyCertSign])
    let (_, signingLeaf) = try f.leaf(under: good, key: goodKey, keyUsage: [.keyAgreement])
    expectFailure(.keyUsage, depth: 0, anchors: [f.root], chain: [f.root, good, signingLeaf])
    // keyUsage absent on the leaf is allowed.
    let (_, plainLeaf) = try f.leaf(under: good, key: goodKey, keyUsage: nil)
    #expect(
      try CertificateChainVerifier(trustAnchors: [f.root]).verify(rootToLeaf: [f.root, good, plainLeaf]).count
        == 3)
  }

  @Test func pathLengthIsEnforced() throws {
    let f = try Fixture()
    let (firstKey, first) = try f.intermediate(isCA: true, keyUsage: [.keyCertSign], pathLength: 0)
    let secondKey = try ECPrivateKey(curve: .p384, entropy: f.entropy)
    var b = f.builder("Neg Second Intermediate", key: secondKey, serial: 4)
    b.isCertificateAuthority = true
    b.keyUsage = [.keyCertSign]
    let second = try b.issued(by: first, issuerKey: firstKey)
    let (_, leaf) = try f.leaf(under: second, key: secondKey)
    expectFailure(.pathLength, anchors: [f.root], chain: [f.root, first, second, leaf])
  }

  @Test func testPKIVerifiesAndIsReproducible() throws {
    let start: Int64 = 1_700_000_000
    let pki = try TestPKI.generate(entropy: SeededEntropy(seed: 2024), notBefore: start)
    let again = try TestPKI.generate(entropy: SeededEntropy(seed: 2024), notBefore: start)
    #expect(pki.rootKey.scalar == again.rootKey.scalar)
    #expect(pki.intermediateKey.scalar == again.intermediateKey.scalar)
    #expect(pki.deviceKey.scalar == again.deviceKey.scalar)
    #expect(pki.root.subject == "CN=Cove Test Root CA,O=Cove")
    #expect(pki.intermediate.subject == "CN=Cove Test Intermediate CA,O=Cove")
    #expect(pki.device.subject == "CN=Cove Test Device,O=Cove")
    #expect(pki.device.issuer == pki.intermediate.subject)
    #expect(pki.root.issuer == pki.root.subject)
    #expect(pki.root.notBefore == start)
    #expect(pki.device.notAfter == start + 3650 * Self.day)
    #expect(pki.root.isCertificateAuthority && pki.intermediate.isCertificateAuthority)
    #expect(!pki.device.isCertificateAuthority)
    #expect(try pki.device.publicKey() == pki.deviceKey.publicKey)
    let path = try CertificateChainVerifier(trustAnchors: [pki.root]).verify(
      rootToLeaf: pki.chainRootToLeaf, at: start + Self.day)
    #expect(path == pki.chainRootToLeaf)
    expectFailure(.notYetValid, anchors: [pki.root], chain: pki.chainRootToLeaf, at: start - 1)
    expectFailure(.expired, anchors: [pki.root], chain: pki.chainRootToLeaf, at: start + 3651 * Self.day)
    let other = try TestPKI.generate(
      entropy: SeededEntropy(seed: 2025), commonNamePrefix: "Other", notBefore: start)
    #expect(other.root.subject == "CN=Other Root CA,O=Cove")
    expectFailure(.untrustedRoot, anchors: [other.root], chain: pki.chainRootToLeaf, at: start + Self.day)
  }

  /// The `openssl verify` CLI accepts TestPKI's output, and checks the extensions it is meant to have.
  @Test func testPKIIsAcceptedByOpenSSLCLI() throws {
    let pki = try TestPKI.generate(entropy: SystemEntropy(), notBefore: Self.now - Self.day)
    let directory = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    try write(pki.root.pem, to: directory.appendingPathComponent("root.pem"))
    try write(pki.intermediate.pem, to: directory.appendingPathComponent("int.pem"))
    try write(pki.device.pem, to: directory.appendingPathComponent("device.pem"))
    let verified = try run(
      "openssl", ["verify", "-x509_strict", "-CAfile", "root.pem", "-untrusted", "int.pem", "device.pem"],
      in: directory)
    #expect(verified.status == 0, "\(verified.errorText)")
    let text = try run("openssl", ["x509", "-in", "int.pem", "-noout", "-text"], in: directory)
    let dump = String(decoding: text.output, as: UTF8.self)
    #expect(dump.contains("CA:TRUE, pathlen:0"))
    #expect(dump.contains("Certificate Sign, CRL Sign"))
    #expect(dump.contains("X509v3 Authority Key Identifier"))
    #expect(dump.contains("ecdsa-with-SHA384"))
    let device = String(
      decoding: try run("openssl", ["x509", "-in", "device.pem", "-noout", "-text"], in: directory).output,
      as: UTF8.self)
    #expect(device.contains("CA:FALSE"))
    #expect(device.contains("X509v3 Key Usage: critical\n                Digital Signature"))
  }

  @Test func pemAndDERDecoding() throws {
    let pki = try TestPKI.generate(entropy: SeededEntropy(seed: 5), notBefore: 1_700_000_000)
    let bundle = pki.chainRootToLeaf.map(\.pem).joined()
    let parsed = try X509Certificate.certificates(fromPEM: bundle)
    #expect(parsed == pki.chainRootToLeaf)
    #expect(try X509Certificate(der: pki.device.der) == pki.device)
    let trailing = #expect(throws: CryptoError.self) { try X509Certificate(der: pki.device.der + [0]) }
    #expect(trailing?.code == .decodingFailed)
    let truncated = #expect(throws: CryptoError.self) {
      try X509Certificate(der: Array(pki.device.der.dropLast()))
    }
    #expect(truncated?.code == .decodingFailed)
    let empty = #expect(throws: CryptoError.self) {
      try X509Certificate.certificates(fromPEM: "nothing here")
    }
    #expect(empty?.code == .decodingFailed)
  }
}
