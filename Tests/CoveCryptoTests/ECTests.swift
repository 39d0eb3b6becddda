import CoveCrypto
import Foundation
import Testing

@Suite("Elliptic-curve keys, ECDSA, ECDH")
struct ECTests {
  static let curves: [(EllipticCurve, HashAlgorithm)] = [(.p256, .sha256), (.p384, .sha384)]

  @Test func coordinateSizes() {
    #expect(EllipticCurve.p256.coordinateSize == 32)
    #expect(EllipticCurve.p384.coordinateSize == 48)
  }

  // d = 1 gives Q = G, the P-256 base point (SEC 2 §2.4.2 / FIPS 186-4 D.1.2.3).
  @Test func scalarOneGivesTheGenerator() throws {
    let key = try ECPrivateKey(curve: .p256, scalar: [1])
    #expect(key.scalar == [UInt8](repeating: 0, count: 31) + [1])
    #expect(
      key.publicKey.rawXY
        == hex(
          """
          6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296\
          4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5
          """))
  }

  @Test func scalarRangeIsEnforced() {
    let zero = #expect(throws: CryptoError.self) { try ECPrivateKey(curve: .p256, scalar: [0]) }
    #expect(zero?.code == .invalidKey)
    // n itself (P-256 order) is out of range.
    let order = hex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551")
    let atOrder = #expect(throws: CryptoError.self) { try ECPrivateKey(curve: .p256, scalar: order) }
    #expect(atOrder?.code == .invalidKey)
    let tooLong = #expect(throws: CryptoError.self) {
      try ECPrivateKey(curve: .p256, scalar: [UInt8](repeating: 1, count: 33))
    }
    #expect(tooLong?.code == .invalidKey)
  }

  @Test(arguments: [EllipticCurve.p256, .p384])
  func rawAndSPKIRoundTrip(_ curve: EllipticCurve) throws {
    let key = try ECPrivateKey(curve: curve, entropy: SystemEntropy())
    let raw = key.publicKey.rawXY
    #expect(raw.count == 2 * curve.coordinateSize)
    let fromRaw = try ECPublicKey(curve: curve, rawXY: raw)
    #expect(fromRaw == key.publicKey)
    #expect(fromRaw.rawXY == raw)
    let fromSPKI = try ECPublicKey(subjectPublicKeyInfoDER: key.publicKey.subjectPublicKeyInfoDER)
    #expect(fromSPKI.curve == curve)
    #expect(fromSPKI.rawXY == raw)
    #expect(fromSPKI.subjectPublicKeyInfoDER == key.publicKey.subjectPublicKeyInfoDER)
    let trailing = #expect(throws: CryptoError.self) {
      try ECPublicKey(subjectPublicKeyInfoDER: key.publicKey.subjectPublicKeyInfoDER + [0])
    }
    #expect(trailing?.code == .decodingFailed)
    let rebuilt = try ECPrivateKey(curve: curve, scalar: key.scalar)
    #expect(rebuilt.publicKey == key.publicKey)
  }

  @Test(arguments: [EllipticCurve.p256, .p384])
  func invalidPointsAreRejected(_ curve: EllipticCurve) throws {
    let key = try ECPrivateKey(curve: curve, entropy: SystemEntropy())
    var raw = key.publicKey.rawXY
    raw[raw.count - 1] ^= 0x01  // (x, y+1) is not on the curve
    let offCurve = #expect(throws: CryptoError.self) { try ECPublicKey(curve: curve, rawXY: raw) }
    #expect(offCurve?.code == .invalidKey)
    let zeros = #expect(throws: CryptoError.self) {
      try ECPublicKey(curve: curve, rawXY: [UInt8](repeating: 0, count: 2 * curve.coordinateSize))
    }
    #expect(zeros?.code == .invalidKey)
    let shortKey = #expect(throws: CryptoError.self) {
      try ECPublicKey(curve: curve, rawXY: Array(key.publicKey.rawXY.dropLast()))
    }
    #expect(shortKey?.code == .invalidKey)
  }

  @Test func pemRoundTrip() throws {
    let key = try ECPrivateKey(curve: .p384, entropy: SystemEntropy())
    let pem = key.pemRepresentation()
    #expect(pem.hasPrefix("-----BEGIN PRIVATE KEY-----\n"))
    let parsed = try ECPrivateKey(pem: pem)
    #expect(parsed.curve == .p384)
    #expect(parsed.scalar == key.scalar)
    #expect(parsed.publicKey == key.publicKey)
    let garbage = #expect(throws: CryptoError.self) { try ECPrivateKey(pem: "not a key") }
    #expect(garbage?.code == .decodingFailed)
  }

  @Test func seededEntropyGivesTheSameKey() throws {
    let a = try ECPrivateKey(curve: .p384, entropy: SeededEntropy(seed: 1234))
    let b = try ECPrivateKey(curve: .p384, entropy: SeededEntropy(seed: 1234))
    let c = try ECPrivateKey(curve: .p384, entropy: SeededEntropy(seed: 1235))
    #expect(a.scalar == b.scalar)
    #expect(a.publicKey == b.publicKey)
    #expect(a.scalar != c.scalar)
    // The first 48 bytes of the documented stream are the scalar (accepted on the first draw).
    #expect(a.scalar == SeededEntropy(seed: 1234).bytes(count: 48))
  }

  @Test(arguments: [EllipticCurve.p256, .p384])
  func signAndVerifyInProcess(_ curve: EllipticCurve) throws {
    let hash: HashAlgorithm = curve == .p256 ? .sha256 : .sha384
    let key = try ECPrivateKey(curve: curve, entropy: SystemEntropy())
    let message = Array("SPDM CHALLENGE_AUTH".utf8)
    let signature = try key.signature(for: message, hash: hash)
    #expect(signature.count == 2 * curve.coordinateSize)
    #expect(key.publicKey.isValidSignature(signature, for: message, hash: hash))
    #expect(key.publicKey.isValidSignature(signature, forDigest: hash.hash(message)))
    #expect(!key.publicKey.isValidSignature(signature, for: message + [0], hash: hash))
    var tampered = signature
    tampered[3] ^= 0x10
    #expect(!key.publicKey.isValidSignature(tampered, for: message, hash: hash))
    #expect(!key.publicKey.isValidSignature(Array(signature.dropLast()), for: message, hash: hash))
    let other = try ECPrivateKey(curve: curve, entropy: SystemEntropy())
    #expect(!other.publicKey.isValidSignature(signature, for: message, hash: hash))
  }

  @Test func signatureEncodingRoundTrip() throws {
    let raw = [UInt8](repeating: 0, count: 47) + [5] + [0x80] + [UInt8](repeating: 0xAB, count: 47)
    let der = try ECDSASignatureEncoding.der(fromRaw: raw)
    // SEQUENCE { INTEGER 5, INTEGER 0x00 80 AB... }
    #expect(Array(der.prefix(5)) == [0x30, 0x36, 0x02, 0x01, 0x05])
    #expect(try ECDSASignatureEncoding.raw(fromDER: der, curve: .p384) == raw)
    let wide = #expect(throws: CryptoError.self) {
      try ECDSASignatureEncoding.raw(fromDER: der, curve: .p256)
    }
    #expect(wide?.code == .invalidSignature)
    let trailing = #expect(throws: CryptoError.self) {
      try ECDSASignatureEncoding.raw(fromDER: der + [0], curve: .p384)
    }
    #expect(trailing?.code == .invalidSignature)
  }

  /// Cove signs, the `openssl` CLI verifies; the CLI signs, Cove verifies.
  @Test(arguments: [EllipticCurve.p256, .p384])
  func ecdsaInteroperatesWithOpenSSLCLI(_ curve: EllipticCurve) throws {
    let hash: HashAlgorithm = curve == .p256 ? .sha256 : .sha384
    let digestFlag = curve == .p256 ? "-sha256" : "-sha384"
    let directory = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    let key = try ECPrivateKey(curve: curve, entropy: SystemEntropy())
    let message = Array("measurement transcript".utf8)
    try write(message, to: directory.appendingPathComponent("msg"))
    try write(message + [1], to: directory.appendingPathComponent("tampered"))
    try write(key.publicKey.pemRepresentation, to: directory.appendingPathComponent("pub.pem"))
    try write(key.pemRepresentation(), to: directory.appendingPathComponent("key.pem"))

    // Cove → openssl.
    let signature = try key.signature(for: message, hash: hash)
    try write(
      try ECDSASignatureEncoding.der(fromRaw: signature), to: directory.appendingPathComponent("sig.der"))
    let verified = try run(
      "openssl", ["dgst", digestFlag, "-verify", "pub.pem", "-signature", "sig.der", "msg"], in: directory)
    #expect(verified.status == 0, "\(verified.errorText)")
    #expect(String(decoding: verified.output, as: UTF8.self).contains("Verified OK"))
    let rejected = try run(
      "openssl", ["dgst", digestFlag, "-verify", "pub.pem", "-signature", "sig.der", "tampered"],
      in: directory)
    #expect(rejected.status != 0)

    // openssl → Cove (the CLI also reads Cove's PKCS#8 PEM).
    let signed = try run(
      "openssl", ["dgst", digestFlag, "-sign", "key.pem", "-out", "cli.der", "msg"], in: directory)
    #expect(signed.status == 0, "\(signed.errorText)")
    let cliSignature = try ECDSASignatureEncoding.raw(
      fromDER: try read(directory.appendingPathComponent("cli.der")), curve: curve)
    #expect(key.publicKey.isValidSignature(cliSignature, for: message, hash: hash))
    #expect(!key.publicKey.isValidSignature(cliSignature, for: message + [1], hash: hash))
    var tampered = cliSignature
    tampered[tampered.count - 1] ^= 0x01
    #expect(!key.publicKey.isValidSignature(tampered, for: message, hash: hash))
  }

  /// Keys generated by the CLI, as PKCS#8 and as SEC1 "EC PRIVATE KEY", load with the same scalar.
  @Test func loadsOpenSSLGeneratedKeys() throws {
    let directory = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    try run(
      "openssl", ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", "k8.pem"],
      in: directory)
    try run("openssl", ["ec", "-in", "k8.pem", "-out", "sec1.pem"], in: directory)
    let pkcs8 = String(decoding: try read(directory.appendingPathComponent("k8.pem")), as: UTF8.self)
    let sec1 = String(decoding: try read(directory.appendingPathComponent("sec1.pem")), as: UTF8.self)
    #expect(pkcs8.contains("BEGIN PRIVATE KEY"))
    #expect(sec1.contains("BEGIN EC PRIVATE KEY"))
    let a = try ECPrivateKey(pem: pkcs8)
    let b = try ECPrivateKey(pem: sec1)
    #expect(a.curve == .p384)
    #expect(a.scalar == b.scalar)
    #expect(a.publicKey == b.publicKey)
  }

  @Test(arguments: [EllipticCurve.p256, .p384])
  func ecdhAgreesWithOpenSSLCLI(_ curve: EllipticCurve) throws {
    let alice = try ECPrivateKey(curve: curve, entropy: SystemEntropy())
    let bob = try ECPrivateKey(curve: curve, entropy: SystemEntropy())
    let secret = try alice.sharedSecret(with: bob.publicKey)
    #expect(secret.count == curve.coordinateSize)
    #expect(try bob.sharedSecret(with: alice.publicKey) == secret)

    let directory = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    try write(alice.pemRepresentation(), to: directory.appendingPathComponent("alice.pem"))
    try write(bob.publicKey.pemRepresentation, to: directory.appendingPathComponent("bob.pub.pem"))
    let derived = try run(
      "openssl", ["pkeyutl", "-derive", "-inkey", "alice.pem", "-peerkey", "bob.pub.pem"], in: directory)
    #expect(derived.status == 0, "\(derived.errorText)")
    #expect(derived.output == secret)
  }

  @Test func ecdhCurveMismatchThrows() throws {
    let a = try ECPrivateKey(curve: .p256, entropy: SystemEntropy())
    let b = try ECPrivateKey(curve: .p384, entropy: SystemEntropy())
    let error = #expect(throws: CryptoError.self) { try a.sharedSecret(with: b.publicKey) }
    #expect(error?.code == .curveMismatch)
  }
}
