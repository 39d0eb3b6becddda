import Foundation
import Testing

@testable import CoveCrypto

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
    // Deterministic ECDSA (RFC 6979): the certificates, signatures included, are byte-identical.
    #expect(pki.chainRootToLeaf.map(\.der) == again.chainRootToLeaf.map(\.der))
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

  /// Pins TestPKI's output across processes and machines: SHA-256 of each certificate's DER for one
  /// seed and notBefore. The keys, serials and TBS come from the seed; the signatures are RFC 6979
  /// over the TBS (checked independently by `signaturesAreRFC6979OverTheTBS`). A change here means
  /// every seeded trace carrying a chain changes too (and the built-in device's trust anchor).
  @Test func testPKIMatchesGoldenDigests() throws {
    let pki = try TestPKI.generate(entropy: SeededEntropy(seed: 2024), notBefore: 1_700_000_000)
    let digests = pki.chainRootToLeaf.map { hexString(HashAlgorithm.sha256.hash($0.der)) }
    #expect(
      digests == [
        "c5cb62d9d693313f64e1e726ffd0f4dbfb1ae0e5c1834612cf8324304abf53ba",
        "935671cf92655f9ea67a71f9d421bf87a52b6bb31bb45608e66a2da8b01be635",
        "96cbc28721feb82d31d97611007070f8b84f131e8240539b87c67b1dd7633895",
      ])
    let p256 = try TestPKI.generate(
      entropy: SeededEntropy(seed: 2024), notBefore: 1_700_000_000, deviceCurve: .p256)
    #expect(
      hexString(HashAlgorithm.sha256.hash(p256.device.der))
        == "171de11b6a71ff2062064c7e9fe7685f8522c50693727f44219d40739e328208")
  }

  /// A P-256 root and leaf signed with ecdsa-with-SHA256 (TestPKI's CAs are P-384 with SHA-384).
  static func p256Chain(rootKey: ECPrivateKey, leafKey: ECPrivateKey, start: Int64) throws
    -> (root: X509Certificate, leaf: X509Certificate)
  {
    var rootBuilder = CertificateBuilder(
      commonName: "P-256 Root", publicKey: rootKey.publicKey, serialNumber: [0x11], notBefore: start,
      notAfter: start + 10 * day)
    rootBuilder.isCertificateAuthority = true
    rootBuilder.keyUsage = [.keyCertSign]
    rootBuilder.signatureHash = .sha256
    let root = try rootBuilder.selfSigned(with: rootKey)
    var leafBuilder = CertificateBuilder(
      commonName: "P-256 Leaf", publicKey: leafKey.publicKey, serialNumber: [0x12], notBefore: start,
      notAfter: start + 10 * day)
    leafBuilder.isCertificateAuthority = false
    leafBuilder.keyUsage = [.digitalSignature]
    leafBuilder.signatureHash = .sha256
    return (root, try leafBuilder.issued(by: root, issuerKey: rootKey))
  }

  /// Python `cryptography` (its own OpenSSL, ≥ 3.2) checks each certificate against its issuer and
  /// re-signs the TBSCertificate with the issuer's key and `deterministic_signing=True`: the result
  /// must be exactly the certificate's signatureValue. TestPKI with random and seeded keys, and a
  /// P-256 / SHA-256 chain.
  @Test func signaturesAreRFC6979OverTheTBS() throws {
    var lines: [String] = []
    func add(_ certificate: X509Certificate, issuer: X509Certificate, key: ECPrivateKey, hash: HashAlgorithm)
    {
      lines.append(
        [hexString(certificate.der), hexString(issuer.der), hexString(key.scalar), "\(key.curve)", "\(hash)"]
          .joined(separator: ","))
    }
    for pki in [
      try TestPKI.generate(entropy: SystemEntropy(), notBefore: Self.now - Self.day, deviceCurve: .p256),
      try TestPKI.generate(entropy: SeededEntropy(seed: 2024), notBefore: 1_700_000_000),
    ] {
      add(pki.root, issuer: pki.root, key: pki.rootKey, hash: .sha384)
      add(pki.intermediate, issuer: pki.root, key: pki.rootKey, hash: .sha384)
      add(pki.device, issuer: pki.intermediate, key: pki.intermediateKey, hash: .sha384)
    }
    let rootKey = try ECPrivateKey(curve: .p256, entropy: SystemEntropy())
    let p256 = try Self.p256Chain(
      rootKey: rootKey, leafKey: try ECPrivateKey(curve: .p256, entropy: SystemEntropy()),
      start: Self.now - Self.day)
    add(p256.root, issuer: p256.root, key: rootKey, hash: .sha256)
    add(p256.leaf, issuer: p256.root, key: rootKey, hash: .sha256)

    let script = """
      import sys
      from cryptography import x509
      from cryptography.hazmat.primitives import hashes
      from cryptography.hazmat.primitives.asymmetric import ec
      curves = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1()}
      algs = {"SHA-256": (hashes.SHA256(), x509.SignatureAlgorithmOID.ECDSA_WITH_SHA256),
              "SHA-384": (hashes.SHA384(), x509.SignatureAlgorithmOID.ECDSA_WITH_SHA384)}
      for line in sys.stdin.read().split():
          der, issuer_der, d, curve, alg = line.split(",")
          cert = x509.load_der_x509_certificate(bytes.fromhex(der))
          issuer = x509.load_der_x509_certificate(bytes.fromhex(issuer_der))
          cert.verify_directly_issued_by(issuer)
          digest, oid = algs[alg]
          assert cert.signature_algorithm_oid == oid, cert.signature_algorithm_oid
          key = ec.derive_private_key(int(d, 16), curves[curve])
          again = key.sign(cert.tbs_certificate_bytes, ec.ECDSA(digest, deterministic_signing=True))
          print("same" if again == cert.signature else "different")
      """
    let result = try run("python3", ["-c", script], input: Array(lines.joined(separator: "\n").utf8))
    #expect(result.status == 0, "\(result.errorText)")
    let verdicts = String(decoding: result.output, as: UTF8.self).split(separator: "\n").map(String.init)
    #expect(verdicts == Array(repeating: "same", count: lines.count))
  }

  /// CertificateBuilder with P-256 and ecdsa-with-SHA256: same fields and key, same DER; the
  /// AlgorithmIdentifier appears twice (TBSCertificate.signature and Certificate.signatureAlgorithm,
  /// which RFC 5280 §4.1.1.2 requires to match); the chain verifies with Cove and the openssl CLI.
  @Test func builderIsDeterministicWithSHA256() throws {
    let entropy = SeededEntropy(seed: 31)
    let rootKey = try ECPrivateKey(curve: .p256, entropy: entropy)
    let leafKey = try ECPrivateKey(curve: .p256, entropy: entropy)
    let start = Self.now - Self.day
    let (root, leaf) = try Self.p256Chain(rootKey: rootKey, leafKey: leafKey, start: start)
    let again = try Self.p256Chain(rootKey: rootKey, leafKey: leafKey, start: start)
    #expect(root.der == again.root.der)
    #expect(leaf.der == again.leaf.der)
    // SEQUENCE { OID 1.2.840.10045.4.3.2 } without parameters (RFC 5758 §3.2).
    let ecdsaWithSHA256 = hex("300a06082a8648ce3d040302")
    for certificate in [root, leaf] {
      let count = (0...(certificate.der.count - ecdsaWithSHA256.count)).filter {
        Array(certificate.der[$0..<$0 + ecdsaWithSHA256.count]) == ecdsaWithSHA256
      }.count
      #expect(count == 2)
    }
    #expect(
      try CertificateChainVerifier(trustAnchors: [root]).verify(rootToLeaf: [root, leaf]) == [root, leaf])

    let directory = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    try write(root.pem, to: directory.appendingPathComponent("root.pem"))
    try write(leaf.pem, to: directory.appendingPathComponent("leaf.pem"))
    let verified = try run(
      "openssl", ["verify", "-x509_strict", "-CAfile", "root.pem", "leaf.pem"], in: directory)
    #expect(verified.status == 0, "\(verified.errorText)")
  }

  /// The DER writer that wraps the signed certificate: short and long definite lengths (X.690 §8.1.3),
  /// each with the fewest octets (§10.1).
  @Test func derLengthForms() {
    #expect(derTLV(0x03, []) == [0x03, 0x00])
    #expect(derTLV(0x30, Array(repeating: 7, count: 127)).prefix(2) == [0x30, 0x7F])
    #expect(derTLV(0x30, Array(repeating: 7, count: 128)).prefix(3) == [0x30, 0x81, 0x80])
    #expect(derTLV(0x30, Array(repeating: 7, count: 255)).prefix(3) == [0x30, 0x81, 0xFF])
    #expect(derTLV(0x30, Array(repeating: 7, count: 256)).prefix(4) == [0x30, 0x82, 0x01, 0x00])
    #expect(derTLV(0x30, Array(repeating: 7, count: 70_000)).prefix(5) == [0x30, 0x83, 0x01, 0x11, 0x70])
    #expect(derTLV(0x04, [1, 2]) == [0x04, 0x02, 1, 2])
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
