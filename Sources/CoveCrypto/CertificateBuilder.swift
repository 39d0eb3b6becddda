internal import COpenSSL
import Glibc

/// Makes X.509 v3 certificates with chosen properties, for `TestPKI` and for negative tests
/// (expired, CA:FALSE issuers, missing keyCertSign, path-length violations, ...).
///
/// Certificates are assembled with OpenSSL's X509 APIs and signed with ECDSA (RFC 5758 §3.2,
/// ecdsa-with-SHA256/384) using Cove's deterministic nonces (RFC 6979, `ECPrivateKey.signature`), so
/// a builder with the same fields and the same signing key yields byte-identical DER every time.
/// Extensions follow RFC 5280 §4.2.
public struct CertificateBuilder: Sendable {
  /// keyUsage bits (RFC 5280 §4.2.1.3).
  public struct KeyUsage: OptionSet, Sendable, Hashable {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let digitalSignature = KeyUsage(rawValue: 1 << 0)
    public static let nonRepudiation = KeyUsage(rawValue: 1 << 1)
    public static let keyEncipherment = KeyUsage(rawValue: 1 << 2)
    public static let dataEncipherment = KeyUsage(rawValue: 1 << 3)
    public static let keyAgreement = KeyUsage(rawValue: 1 << 4)
    public static let keyCertSign = KeyUsage(rawValue: 1 << 5)
    public static let cRLSign = KeyUsage(rawValue: 1 << 6)

    /// The OpenSSL configuration names, in RFC 5280 bit order.
    var configurationNames: [String] {
      let names: [(KeyUsage, String)] = [
        (.digitalSignature, "digitalSignature"), (.nonRepudiation, "nonRepudiation"),
        (.keyEncipherment, "keyEncipherment"), (.dataEncipherment, "dataEncipherment"),
        (.keyAgreement, "keyAgreement"), (.keyCertSign, "keyCertSign"), (.cRLSign, "cRLSign"),
      ]
      return names.filter { contains($0.0) }.map(\.1)
    }
  }

  /// Subject commonName (first RDN).
  public var commonName: String
  /// Subject organizationName (second RDN), or nil to omit it.
  public var organization: String?
  /// The certified key.
  public var publicKey: ECPublicKey
  /// Serial number, unsigned big-endian (RFC 5280 §4.1.2.2: positive, at most 20 octets).
  public var serialNumber: [UInt8]
  public var notBefore: Int64
  public var notAfter: Int64
  /// basicConstraints cA; nil omits the extension.
  public var isCertificateAuthority: Bool?
  /// basicConstraints pathLenConstraint (only meaningful with `isCertificateAuthority == true`).
  public var pathLengthConstraint: Int?
  public var basicConstraintsCritical = true
  /// keyUsage; nil omits the extension.
  public var keyUsage: KeyUsage?
  public var keyUsageCritical = true
  /// Adds subjectKeyIdentifier and, for certificates issued by another certificate,
  /// authorityKeyIdentifier (RFC 5280 §4.2.1.1, §4.2.1.2).
  public var includeKeyIdentifiers = true
  /// Digest for the ECDSA signature.
  public var signatureHash: HashAlgorithm = .sha384

  public init(
    commonName: String, organization: String? = "Cove", publicKey: ECPublicKey, serialNumber: [UInt8],
    notBefore: Int64, notAfter: Int64
  ) {
    self.commonName = commonName
    self.organization = organization
    self.publicKey = publicKey
    self.serialNumber = serialNumber
    self.notBefore = notBefore
    self.notAfter = notAfter
  }

  /// A self-signed certificate (issuer = subject) signed by `key`, which should match `publicKey`.
  public func selfSigned(with key: ECPrivateKey) throws(CryptoError) -> X509Certificate {
    try build(issuer: nil, signingKey: key)
  }

  /// A certificate issued by `issuer`, signed with `issuerKey`.
  public func issued(by issuer: X509Certificate, issuerKey: ECPrivateKey) throws(CryptoError)
    -> X509Certificate
  {
    try build(issuer: issuer, signingKey: issuerKey)
  }

  private func build(issuer: X509Certificate?, signingKey: ECPrivateKey) throws(CryptoError)
    -> X509Certificate
  {
    guard !serialNumber.isEmpty, serialNumber.count <= 20 else {
      throw CryptoError(code: .invalidParameter, operation: "CertificateBuilder: serial must be 1...20 bytes")
    }
    let certificate = try OpenSSLObject(X509_new(), operation: "X509_new") { X509_free($0) }
    let x = certificate.pointer
    try check(X509_set_version(x, Int(X509_VERSION_3)), "X509_set_version")

    let serial = try makeBigNumber(serialNumber)
    let serialInteger = try OpenSSLObject(
      OpaquePointer(BN_to_ASN1_INTEGER(serial.pointer, nil)), operation: "BN_to_ASN1_INTEGER"
    ) { ASN1_INTEGER_free(UnsafeMutablePointer($0)) }
    try check(X509_set_serialNumber(x, UnsafeMutablePointer(serialInteger.pointer)), "X509_set_serialNumber")

    let name = try OpenSSLObject(X509_NAME_new(), operation: "X509_NAME_new") { X509_NAME_free($0) }
    try addEntry(name, "CN", commonName)
    if let organization { try addEntry(name, "O", organization) }
    try check(X509_set_subject_name(x, name.pointer), "X509_set_subject_name")
    let issuerName = issuer.map { X509_get_subject_name($0.x509.pointer) } ?? name.pointer
    try check(X509_set_issuer_name(x, issuerName), "X509_set_issuer_name")

    try setTime(notBefore, X509_set1_notBefore, x, "notBefore")
    try setTime(notAfter, X509_set1_notAfter, x, "notAfter")
    try check(X509_set_pubkey(x, publicKey.pkey.pointer), "X509_set_pubkey")

    // X509V3_CTX is a plain struct; zero-initialised is X509V3_set_ctx_nodb (no config database).
    var context = X509V3_CTX()
    X509V3_set_ctx(&context, issuer?.x509.pointer ?? x, x, nil, nil, 0)
    if let isCertificateAuthority {
      var value = isCertificateAuthority ? "CA:TRUE" : "CA:FALSE"
      if isCertificateAuthority, let pathLengthConstraint { value += ",pathlen:\(pathLengthConstraint)" }
      try addExtension(x, &context, NID_basic_constraints, value, critical: basicConstraintsCritical)
    }
    if let keyUsage, !keyUsage.isEmpty {
      try addExtension(
        x, &context, NID_key_usage, keyUsage.configurationNames.joined(separator: ","),
        critical: keyUsageCritical)
    }
    if includeKeyIdentifiers {
      try addExtension(x, &context, NID_subject_key_identifier, "hash", critical: false)
      if issuer != nil {
        try addExtension(x, &context, NID_authority_key_identifier, "keyid:always", critical: false)
      }
    }

    return try sign(x, with: signingKey)
  }

  /// Signs the assembled certificate deterministically: SEQUENCE { tbsCertificate, signatureAlgorithm,
  /// signatureValue BIT STRING } (RFC 5280 §4.1.1) with the DER ECDSA-Sig-Value of Cove's RFC 6979
  /// ECDSA over the TBSCertificate DER, so the same fields and key always give the same certificate.
  ///
  /// OpenSSL 3.0 has no public setter for the AlgorithmIdentifier inside TBSCertificate (only const
  /// getters), so `X509_sign` runs first: it sets that one and the outer one, the same OID without
  /// parameters (RFC 5758 §3.2), and its own signature — made with a random nonce — is discarded.
  /// The TBS DER is then re-encoded by OpenSSL (`i2d_re_X509_tbs`), signed here, wrapped, and parsed
  /// back with `d2i_X509`.
  private func sign(_ x: OpaquePointer, with signingKey: ECPrivateKey) throws(CryptoError)
    -> X509Certificate
  {
    guard X509_sign(x, signingKey.pkey.pointer, signatureHash.evpMD) > 0 else {
      throw CryptoError.openSSL(.internalFailure, "X509_sign")
    }
    let tbs = try encodeDER("i2d_re_X509_tbs") { i2d_re_X509_tbs(x, $0) }
    var algorithm: UnsafePointer<X509_ALGOR>? = nil
    X509_get0_signature(nil, &algorithm, x)
    guard let algorithm else {
      throw CryptoError.openSSL(.internalFailure, "X509_get0_signature")
    }
    let algorithmDER = try encodeDER("i2d_X509_ALGOR") { i2d_X509_ALGOR(algorithm, $0) }
    let signature = try ECDSASignatureEncoding.der(
      fromRaw: signingKey.signature(for: tbs, hash: signatureHash))
    // BIT STRING contents: the count of unused bits in the last octet (0), then the octets (X.690 §8.6).
    let der = derTLV(0x30, tbs + algorithmDER + derTLV(0x03, [0] + signature))
    return try X509Certificate(der: der)
  }

  private func addEntry(_ name: OpenSSLObject, _ field: String, _ value: String) throws(CryptoError) {
    let bytes = Array(value.utf8)
    try check(
      X509_NAME_add_entry_by_txt(name.pointer, field, cove_MBSTRING_UTF8(), bytes, Int32(bytes.count), -1, 0),
      "X509_NAME_add_entry_by_txt(\(field))", .invalidParameter)
  }

  private func setTime(
    _ seconds: Int64, _ setter: (OpaquePointer?, UnsafePointer<ASN1_TIME>?) -> Int32, _ x: OpaquePointer,
    _ field: String
  ) throws(CryptoError) {
    let time = try OpenSSLObject(
      OpaquePointer(ASN1_TIME_set(nil, time_t(seconds))), operation: "ASN1_TIME_set(\(field))",
      code: .invalidParameter
    ) { ASN1_TIME_free(UnsafeMutablePointer($0)) }
    try check(setter(x, UnsafePointer(time.pointer)), "X509_set1_\(field)")
  }

  private func addExtension(
    _ x: OpaquePointer, _ context: inout X509V3_CTX, _ nid: Int32, _ value: String, critical: Bool
  ) throws(CryptoError) {
    let text = (critical ? "critical," : "") + value
    let ext = try OpenSSLObject(
      X509V3_EXT_conf_nid(nil, &context, nid, text), operation: "X509V3_EXT_conf_nid(\(text))",
      code: .invalidParameter
    ) { X509_EXTENSION_free($0) }
    try check(X509_add_ext(x, ext.pointer, -1), "X509_add_ext")
  }
}

/// One DER TLV with a definite length (X.690 §8.1.3: short form below 128, else the long form with
/// the fewest length octets, §10.1). `tag` is a single identifier octet.
func derTLV(_ tag: UInt8, _ content: [UInt8]) -> [UInt8] {
  var length: [UInt8] = []
  if content.count < 0x80 {
    length = [UInt8(content.count)]
  } else {
    var remaining = content.count
    while remaining > 0 {
      length.insert(UInt8(remaining & 0xFF), at: 0)
      remaining >>= 8
    }
    length.insert(0x80 | UInt8(length.count), at: 0)
  }
  return [tag] + length + content
}
