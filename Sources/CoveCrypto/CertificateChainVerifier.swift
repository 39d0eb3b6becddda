internal import COpenSSL

/// Why a certificate chain was rejected.
public struct CertificateVerificationError: Error, Hashable, Sendable, CustomStringConvertible {
  /// An extensible code (unknown values survive, swift-system `Errno` style).
  public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    /// A certificate's signature does not verify under its issuer's key (RFC 5280 §6.1.3 (a)(1)).
    public static let badSignature = Code(rawValue: "badSignature")
    /// The path does not end at a trust anchor (RFC 5280 §6.1).
    public static let untrustedRoot = Code(rawValue: "untrustedRoot")
    /// The check time is after notAfter (RFC 5280 §6.1.3 (a)(2)).
    public static let expired = Code(rawValue: "expired")
    /// The check time is before notBefore.
    public static let notYetValid = Code(rawValue: "notYetValid")
    /// An issuer lacks basicConstraints cA = TRUE (RFC 5280 §6.1.4 (k)).
    public static let notACertificateAuthority = Code(rawValue: "notACertificateAuthority")
    /// keyUsage present but without keyCertSign on an issuer (§6.1.4 (n)) or digitalSignature on the
    /// leaf (the SPDM leaf signs CHALLENGE_AUTH / KEY_EXCHANGE_RSP).
    public static let keyUsage = Code(rawValue: "keyUsage")
    /// A pathLenConstraint is exceeded (§6.1.4 (l), (m)).
    public static let pathLength = Code(rawValue: "pathLength")
    /// No certificates were supplied.
    public static let emptyChain = Code(rawValue: "emptyChain")
    /// The chain is not in root→leaf order (each certificate's issuer must be the one before it) or
    /// a certificate is malformed.
    public static let malformed = Code(rawValue: "malformed")
    /// Any other OpenSSL verification failure (see `detail`).
    public static let other = Code(rawValue: "other")

    public var description: String { rawValue }
  }

  public var code: Code
  /// Position of the offending certificate counted from the leaf (0 = leaf), as in RFC 5280 paths.
  public var depth: Int
  /// Subject of the offending certificate (`X509Certificate.subject` format), or "" when none.
  public var subject: String
  /// Human-readable reason (OpenSSL's `X509_verify_cert_error_string` where it comes from OpenSSL).
  public var detail: String

  public init(code: Code, depth: Int, subject: String, detail: String) {
    self.code = code
    self.depth = depth
    self.subject = subject
    self.detail = detail
  }

  public var description: String {
    "CertificateVerificationError(\(code.rawValue)) at depth \(depth) [\(subject)]: \(detail)"
  }
}

/// Validates SPDM certificate chains against a set of trust anchors (RFC 5280 §6 path validation,
/// performed by OpenSSL's `X509_verify_cert`, plus the SPDM-relevant extension checks below).
public struct CertificateChainVerifier: Sendable {
  public let trustAnchors: [X509Certificate]

  public init(trustAnchors: [X509Certificate]) {
    self.trustAnchors = trustAnchors
  }

  /// Verifies `chain`, ordered root→leaf as SPDM sends it (DSP0274 "certificate chain format");
  /// `chain[0]` may be a trust anchor itself or be issued by one. Any trust anchor terminates a path,
  /// self-signed or not (`X509_V_FLAG_PARTIAL_CHAIN`), because SPDM provisions anchors per slot.
  ///
  /// Checks signatures, validity at `time` (Unix seconds; nil = now), basicConstraints cA = TRUE on
  /// every issuer, keyCertSign on issuers and digitalSignature on the leaf when keyUsage is present,
  /// and path length constraints. Extended key usage is not checked.
  ///
  /// - Returns: the validated path, root (trust anchor) first, leaf last.
  public func verify(rootToLeaf chain: [X509Certificate], at time: Int64? = nil)
    throws(CertificateVerificationError) -> [X509Certificate]
  {
    guard let leaf = chain.last else {
      throw CertificateVerificationError(code: .emptyChain, depth: 0, subject: "", detail: "no certificates")
    }
    // SPDM fixes the order; OpenSSL would silently reorder, so check names chain as sent.
    for index in chain.indices.dropFirst() {
      let parent = chain[index - 1].x509.pointer
      let child = chain[index].x509.pointer
      if X509_NAME_cmp(X509_get_issuer_name(child), X509_get_subject_name(parent)) != 0 {
        throw CertificateVerificationError(
          code: .malformed, depth: chain.count - 1 - index, subject: chain[index].subject,
          detail: "issuer is not the preceding certificate in the root-to-leaf chain")
      }
    }

    let path: [X509Certificate]
    do {
      path = try runOpenSSL(leaf: leaf, intermediates: Array(chain.dropLast()), time: time)
    } catch let error as CertificateVerificationError {
      throw error
    } catch {
      throw CertificateVerificationError(code: .other, depth: 0, subject: leaf.subject, detail: "\(error)")
    }
    try checkExtensions(path)
    return path
  }

  /// RFC 5280 requirements OpenSSL does not enforce by default: an issuer must assert cA (OpenSSL
  /// also accepts keyUsage-only or v1 issuers), and the leaf's keyUsage must allow signing.
  private func checkExtensions(_ rootToLeaf: [X509Certificate]) throws(CertificateVerificationError) {
    for (index, certificate) in rootToLeaf.enumerated() {
      let depth = rootToLeaf.count - 1 - index
      if depth == 0 {
        if let bits = certificate.keyUsageBits, bits & UInt32(KU_DIGITAL_SIGNATURE) == 0 {
          throw CertificateVerificationError(
            code: .keyUsage, depth: 0, subject: certificate.subject,
            detail: "leaf keyUsage lacks digitalSignature")
        }
      } else {
        guard certificate.isCertificateAuthority else {
          throw CertificateVerificationError(
            code: .notACertificateAuthority, depth: depth, subject: certificate.subject,
            detail: "issuer lacks basicConstraints cA=TRUE")
        }
        if let bits = certificate.keyUsageBits, bits & UInt32(KU_KEY_CERT_SIGN) == 0 {
          throw CertificateVerificationError(
            code: .keyUsage, depth: depth, subject: certificate.subject,
            detail: "issuer keyUsage lacks keyCertSign")
        }
      }
    }
  }

  private func runOpenSSL(leaf: X509Certificate, intermediates: [X509Certificate], time: Int64?)
    throws -> [X509Certificate]
  {
    let store = try OpenSSLObject(X509_STORE_new(), operation: "X509_STORE_new") { X509_STORE_free($0) }
    for anchor in trustAnchors {
      try check(X509_STORE_add_cert(store.pointer, anchor.x509.pointer), "X509_STORE_add_cert")
    }
    try check(X509_STORE_set_flags(store.pointer, UInt(X509_V_FLAG_PARTIAL_CHAIN)), "X509_STORE_set_flags")

    // The stack borrows the certificates (no up-ref); `intermediates` keeps them alive.
    let untrusted = try OpenSSLObject(cove_sk_X509_new_null(), operation: "sk_X509_new_null") {
      cove_sk_X509_free($0)
    }
    for certificate in intermediates {
      guard cove_sk_X509_push(untrusted.pointer, certificate.x509.pointer) > 0 else {
        throw CryptoError.openSSL(.internalFailure, "sk_X509_push")
      }
    }
    let context = try OpenSSLObject(X509_STORE_CTX_new(), operation: "X509_STORE_CTX_new") {
      X509_STORE_CTX_free($0)
    }
    try check(
      X509_STORE_CTX_init(context.pointer, store.pointer, leaf.x509.pointer, untrusted.pointer),
      "X509_STORE_CTX_init")
    if let time {
      X509_STORE_CTX_set_time(context.pointer, 0, time_t(time))
    }

    let verified = X509_verify_cert(context.pointer)
    _ = drainOpenSSLErrors()  // verification failures are reported through the context, not the queue
    guard verified == 1 else {
      throw describeFailure(context.pointer, leaf: leaf)
    }

    let chain = try OpenSSLObject(
      X509_STORE_CTX_get1_chain(context.pointer), operation: "X509_STORE_CTX_get1_chain"
    ) { cove_sk_X509_pop_free($0) }
    var leafToRoot: [X509Certificate] = []
    for index in 0..<cove_sk_X509_num(chain.pointer) {
      let certificate = cove_sk_X509_value(chain.pointer, index)
      let der = try encodeDER("i2d_X509") { i2d_X509(certificate, $0) }
      leafToRoot.append(try X509Certificate(der: der))
    }
    return leafToRoot.reversed()
  }

  private func describeFailure(_ context: OpaquePointer, leaf: X509Certificate)
    -> CertificateVerificationError
  {
    let error = X509_STORE_CTX_get_error(context)
    let depth = Int(X509_STORE_CTX_get_error_depth(context))
    let current = X509_STORE_CTX_get_current_cert(context)
    let subject = current.flatMap { try? X509Certificate.oneLine(X509_get_subject_name($0)) } ?? leaf.subject
    let detail = String(cString: X509_verify_cert_error_string(Int(error)))

    let code: CertificateVerificationError.Code
    switch error {
    case X509_V_ERR_CERT_SIGNATURE_FAILURE, X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE,
      X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY:
      code = .badSignature
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
      X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN,
      X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE, X509_V_ERR_CERT_UNTRUSTED, X509_V_ERR_CERT_REJECTED:
      code = .untrustedRoot
    case X509_V_ERR_CERT_HAS_EXPIRED:
      code = .expired
    case X509_V_ERR_CERT_NOT_YET_VALID:
      code = .notYetValid
    case X509_V_ERR_INVALID_CA:
      // OpenSSL reports a CA whose keyUsage lacks keyCertSign as "invalid CA" too; tell them apart.
      if let current, X509_get_extension_flags(current) & UInt32(EXFLAG_CA) != 0 {
        code = .keyUsage
      } else {
        code = .notACertificateAuthority
      }
    case X509_V_ERR_KEYUSAGE_NO_CERTSIGN, X509_V_ERR_INVALID_PURPOSE:
      code = .keyUsage
    case X509_V_ERR_PATH_LENGTH_EXCEEDED:
      code = .pathLength
    case X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD, X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD,
      X509_V_ERR_INVALID_EXTENSION, X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION:
      code = .malformed
    default:
      code = .other
    }
    return CertificateVerificationError(code: code, depth: depth, subject: subject, detail: detail)
  }
}
