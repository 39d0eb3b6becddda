/// A three-level test PKI shaped like a real SPDM device's: root CA → intermediate CA → device leaf,
/// all P-384 with ecdsa-with-SHA384 (DSP0274 TPM_ALG_ECDSA_ECC_NIST_P384 / TPM_ALG_SHA_384); the
/// device key may be P-256 (`deviceCurve`) so a responder can negotiate ECDSA P-256.
///
/// - Root: basicConstraints CA:TRUE (critical), keyUsage keyCertSign+cRLSign (critical), SKI.
/// - Intermediate: CA:TRUE pathlen:0 (critical), keyCertSign+cRLSign (critical), SKI, AKI.
/// - Device: CA:FALSE (critical), keyUsage digitalSignature (critical), SKI, AKI; no EKU.
///
/// Keys and serial numbers are drawn from the given entropy in a fixed order, and certificates are
/// signed with deterministic ECDSA (RFC 6979, see `CertificateBuilder`), so the same `SeededEntropy`
/// seed, `commonNamePrefix`, `notBefore`, `validityDays` and `deviceCurve` give byte-identical
/// certificates (DER) in every process: an SPDM trace that carries the chain is reproducible.
///
/// `@unchecked Sendable` only because its members are (they are immutable reference types).
public struct TestPKI: @unchecked Sendable {
  public let rootKey: ECPrivateKey
  public let intermediateKey: ECPrivateKey
  public let deviceKey: ECPrivateKey
  public let root: X509Certificate
  public let intermediate: X509Certificate
  public let device: X509Certificate

  /// As an SPDM responder sends it: root first (DSP0274 "certificate chain format").
  public var chainRootToLeaf: [X509Certificate] { [root, intermediate, device] }

  public static func generate(
    entropy: any EntropySource, commonNamePrefix: String = "Cove Test", notBefore: Int64,
    validityDays: Int = 3650, deviceCurve: EllipticCurve = .p384
  ) throws(CryptoError) -> TestPKI {
    guard validityDays > 0 else {
      throw CryptoError(code: .invalidParameter, operation: "TestPKI.generate: validityDays must be positive")
    }
    let notAfter = notBefore + Int64(validityDays) * 86_400
    let rootKey = try ECPrivateKey(curve: .p384, entropy: entropy)
    let intermediateKey = try ECPrivateKey(curve: .p384, entropy: entropy)
    let deviceKey = try ECPrivateKey(curve: deviceCurve, entropy: entropy)

    func serial() -> [UInt8] {
      // 16 bytes, positive and without a leading zero octet (RFC 5280 §4.1.2.2).
      var bytes = entropy.bytes(count: 16)
      bytes[0] = (bytes[0] & 0x7F) | 0x40
      return bytes
    }

    var rootBuilder = CertificateBuilder(
      commonName: "\(commonNamePrefix) Root CA", publicKey: rootKey.publicKey, serialNumber: serial(),
      notBefore: notBefore, notAfter: notAfter)
    rootBuilder.isCertificateAuthority = true
    rootBuilder.keyUsage = [.keyCertSign, .cRLSign]
    let root = try rootBuilder.selfSigned(with: rootKey)

    var intermediateBuilder = CertificateBuilder(
      commonName: "\(commonNamePrefix) Intermediate CA", publicKey: intermediateKey.publicKey,
      serialNumber: serial(), notBefore: notBefore, notAfter: notAfter)
    intermediateBuilder.isCertificateAuthority = true
    intermediateBuilder.pathLengthConstraint = 0
    intermediateBuilder.keyUsage = [.keyCertSign, .cRLSign]
    let intermediate = try intermediateBuilder.issued(by: root, issuerKey: rootKey)

    var deviceBuilder = CertificateBuilder(
      commonName: "\(commonNamePrefix) Device", publicKey: deviceKey.publicKey, serialNumber: serial(),
      notBefore: notBefore, notAfter: notAfter)
    deviceBuilder.isCertificateAuthority = false
    deviceBuilder.keyUsage = [.digitalSignature]
    let device = try deviceBuilder.issued(by: intermediate, issuerKey: intermediateKey)

    return TestPKI(
      rootKey: rootKey, intermediateKey: intermediateKey, deviceKey: deviceKey, root: root,
      intermediate: intermediate, device: device)
  }
}
