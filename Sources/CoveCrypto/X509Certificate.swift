internal import COpenSSL
import Glibc

/// An X.509 v3 certificate (RFC 5280), as carried in SPDM certificate chains (DSP0274 §"Certificate
/// chain format"). Immutable; the commonly used fields are decoded once at construction.
///
/// `@unchecked Sendable`: the wrapped `X509` is never mutated after parsing (its extension cache is
/// filled eagerly in `init`, before the object can be shared).
public final class X509Certificate: @unchecked Sendable, Hashable, CustomStringConvertible {
  let x509: OpenSSLObject
  /// The exact DER this certificate was parsed from.
  public let der: [UInt8]
  /// The subject distinguished name in one line: attributes in encoding order, `type=value` joined by
  /// `,` with RFC 4514 (RFC 2253) escaping and UTF-8 values unescaped, e.g. `CN=Cove Test Root CA,O=Cove`.
  public let subject: String
  /// The issuer distinguished name, in the same format as `subject`.
  public let issuer: String
  /// Start of the validity period (RFC 5280 §4.1.2.5), Unix seconds.
  public let notBefore: Int64
  /// End of the validity period (inclusive), Unix seconds.
  public let notAfter: Int64
  /// basicConstraints cA = TRUE (RFC 5280 §4.2.1.9).
  public let isCertificateAuthority: Bool

  /// Parses one DER certificate; trailing bytes after it are rejected (`.decodingFailed`).
  public init(der: [UInt8]) throws(CryptoError) {
    let x509 = try decodeDER(
      der, "d2i_X509", free: { X509_free($0) },
      decode: { d2i_X509(nil, $0, $1) })
    // Fills OpenSSL's extension cache and flags malformed extensions now rather than on first use.
    let flags = X509_get_extension_flags(x509.pointer)
    guard flags & UInt32(EXFLAG_INVALID) == 0 else {
      throw CryptoError.openSSL(.decodingFailed, "X509Certificate: invalid extensions")
    }
    self.x509 = x509
    self.der = der
    self.subject = try Self.oneLine(X509_get_subject_name(x509.pointer))
    self.issuer = try Self.oneLine(X509_get_issuer_name(x509.pointer))
    self.notBefore = try Self.unixTime(X509_get0_notBefore(x509.pointer), "notBefore")
    self.notAfter = try Self.unixTime(X509_get0_notAfter(x509.pointer), "notAfter")
    self.isCertificateAuthority = flags & UInt32(EXFLAG_CA) != 0
  }

  /// Every "CERTIFICATE" block of a PEM text (RFC 7468 §5), in order; other block types are skipped.
  /// Throws `.decodingFailed` when there is no certificate or a block is malformed.
  public static func certificates(fromPEM pem: String) throws(CryptoError) -> [X509Certificate] {
    let input = try ReadOnlyBIO(Array(pem.utf8), operation: "BIO_new_mem_buf")
    var certificates: [X509Certificate] = []
    while true {
      var name: UnsafeMutablePointer<CChar>? = nil
      var header: UnsafeMutablePointer<CChar>? = nil
      var data: UnsafeMutablePointer<UInt8>? = nil
      var length = 0
      guard PEM_read_bio(input.bio.pointer, &name, &header, &data, &length) == 1 else {
        let reason = ERR_GET_REASON(ERR_peek_last_error())
        if reason == PEM_R_NO_START_LINE && !certificates.isEmpty {
          _ = drainOpenSSLErrors()  // the normal end of input
          break
        }
        throw CryptoError.openSSL(.decodingFailed, "PEM_read_bio")
      }
      let label = name.map { String(cString: $0) } ?? ""
      let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: length)) } ?? []
      cove_OPENSSL_free(name)
      cove_OPENSSL_free(header)
      cove_OPENSSL_free(data)
      if label == "CERTIFICATE" {
        certificates.append(try X509Certificate(der: bytes))
      }
    }
    return certificates
  }

  /// PEM "CERTIFICATE" (RFC 7468 §5).
  public var pem: String { pemEncode(label: "CERTIFICATE", der: der) }

  /// The subject public key (must be EC on P-256 or P-384).
  public func publicKey() throws(CryptoError) -> ECPublicKey {
    let pkey = try OpenSSLObject(
      X509_get_pubkey(x509.pointer), operation: "X509_get_pubkey", code: .invalidKey
    ) { EVP_PKEY_free($0) }
    return try ECPublicKey(pkey: pkey, operation: "X509Certificate.publicKey")
  }

  /// keyUsage bits (OpenSSL `KU_*`), or nil when the extension is absent.
  var keyUsageBits: UInt32? {
    let bits = X509_get_key_usage(x509.pointer)
    return bits == UInt32.max ? nil : bits
  }

  public var description: String { "X509Certificate(\(subject))" }

  public static func == (lhs: X509Certificate, rhs: X509Certificate) -> Bool { lhs.der == rhs.der }
  public func hash(into hasher: inout Hasher) { hasher.combine(der) }

  static func oneLine(_ name: OpaquePointer?) throws(CryptoError) -> String {
    guard let name else { throw CryptoError.openSSL(.decodingFailed, "X509 name") }
    let output = try makeMemoryBIO("BIO_new")
    guard X509_NAME_print_ex(output.pointer, name, 0, cove_name_print_flags()) >= 0 else {
      throw CryptoError.openSSL(.decodingFailed, "X509_NAME_print_ex")
    }
    return String(decoding: contents(of: output), as: UTF8.self)
  }

  private static func unixTime(_ time: UnsafePointer<ASN1_TIME>?, _ field: String) throws(CryptoError)
    -> Int64
  {
    var broken = tm()
    guard let time, ASN1_TIME_to_tm(time, &broken) == 1 else {
      throw CryptoError.openSSL(.decodingFailed, "X509Certificate: \(field)")
    }
    return Int64(timegm(&broken))
  }
}
