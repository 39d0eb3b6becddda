/// The error every fallible CoveCrypto operation throws.
///
/// Modelled on swift-nio-ssl's `BoringSSLError`: a stable, extensible `code` callers can switch on,
/// the operation that failed, and the OpenSSL error queue drained at the point of failure so the
/// low-level reason is never lost (and never leaks into a later, unrelated failure on this thread).
public struct CryptoError: Error, Hashable, Sendable, CustomStringConvertible {
  /// An extensible error code; unknown values survive (swift-system `Errno` style).
  public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    /// A key was malformed, on the wrong curve, out of range, or not on the curve.
    public static let invalidKey = Code(rawValue: "invalidKey")
    /// A signature was malformed (wrong length, bad DER) or could not be produced.
    public static let invalidSignature = Code(rawValue: "invalidSignature")
    /// AEAD tag verification failed (NIST SP 800-38D §7.2 step 10: return FAIL, no plaintext).
    public static let authenticationFailure = Code(rawValue: "authenticationFailure")
    /// A caller-supplied size or length is outside what the algorithm allows.
    public static let invalidParameter = Code(rawValue: "invalidParameter")
    /// DER or PEM input could not be decoded (including trailing bytes after the DER).
    public static let decodingFailed = Code(rawValue: "decodingFailed")
    /// Two keys that must share a curve do not.
    public static let curveMismatch = Code(rawValue: "curveMismatch")
    /// OpenSSL failed where it should not (allocation failure, provider missing, ...).
    public static let internalFailure = Code(rawValue: "internalFailure")

    public var description: String { rawValue }
  }

  public var code: Code
  /// What Cove was doing, e.g. "EVP_PKEY_derive" or "AES256GCM.open".
  public var operation: String
  /// The drained OpenSSL error queue, oldest first, as `ERR_error_string_n` renders it.
  public var openSSLErrors: [String]

  public init(code: Code, operation: String, openSSLErrors: [String] = []) {
    self.code = code
    self.operation = operation
    self.openSSLErrors = openSSLErrors
  }

  public var description: String {
    var text = "CryptoError(\(code.rawValue)) in \(operation)"
    if !openSSLErrors.isEmpty {
      text += ": " + openSSLErrors.joined(separator: "; ")
    }
    return text
  }
}
