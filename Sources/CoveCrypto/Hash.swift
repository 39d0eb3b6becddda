internal import COpenSSL

/// The SPDM hash algorithms Cove supports (DSP0274 `BaseHashAlgo`: TPM_ALG_SHA_256, TPM_ALG_SHA_384),
/// as specified by FIPS 180-4.
public enum HashAlgorithm: Sendable, Hashable {
  case sha256
  case sha384

  /// Output length in bytes (FIPS 180-4 §1, Figure 1).
  public var digestSize: Int {
    switch self {
    case .sha256: 32
    case .sha384: 48
    }
  }

  /// OpenSSL's name for the digest, used for EVP_MAC / EVP_KDF parameters.
  var openSSLName: String {
    switch self {
    case .sha256: "SHA256"
    case .sha384: "SHA384"
    }
  }

  /// The static (never freed) EVP_MD for this algorithm.
  var evpMD: OpaquePointer {
    switch self {
    case .sha256: EVP_sha256()
    case .sha384: EVP_sha384()
    }
  }

  /// One-shot digest of `data`.
  public func hash(_ data: [UInt8]) -> [UInt8] {
    var digest = [UInt8](repeating: 0, count: digestSize)
    var length: UInt32 = 0
    let result = data.withUnsafeBytes { input in
      digest.withUnsafeMutableBufferPointer { output in
        EVP_Digest(input.baseAddress, input.count, output.baseAddress, &length, evpMD, nil)
      }
    }
    guard result == 1, Int(length) == digestSize else { fatalOpenSSL("EVP_Digest") }
    return digest
  }
}

/// A running hash with value semantics, for transcripts that are hashed as they grow (SPDM's
/// message transcripts M1/M2 and TH, DSP0274 §"Transcript and transcript hash calculation rules").
///
/// Copy-on-write over an `EVP_MD_CTX` owner: copying the struct is cheap, and the first `update` on a
/// copy that shares its context duplicates it (`EVP_MD_CTX_copy_ex`), so copies never affect each
/// other. `finalize()` works on a duplicate too, so a transcript can be hashed at an intermediate point
/// and then keep growing.
///
/// `@unchecked Sendable`: the shared context is only ever read (duplicated) while shared, and only
/// mutated after a uniqueness check, the same discipline as the standard library's collections.
public struct IncrementalHash: @unchecked Sendable {
  private var context: DigestContext

  public var algorithm: HashAlgorithm { context.algorithm }

  public init(_ algorithm: HashAlgorithm) {
    context = DigestContext(algorithm)
  }

  public mutating func update(_ data: [UInt8]) {
    data.withUnsafeBytes { uniqueContext().update($0) }
  }

  public mutating func update(_ data: ArraySlice<UInt8>) {
    data.withUnsafeBytes { uniqueContext().update($0) }
  }

  /// The digest of everything so far; the running hash is left untouched.
  public func finalize() -> [UInt8] {
    context.copy().finish()
  }

  private mutating func uniqueContext() -> DigestContext {
    if !isKnownUniquelyReferenced(&context) {
      context = context.copy()
    }
    return context
  }
}

/// Owns one `EVP_MD_CTX`.
private final class DigestContext {
  let algorithm: HashAlgorithm
  let pointer: OpaquePointer

  init(_ algorithm: HashAlgorithm) {
    guard let pointer = EVP_MD_CTX_new() else { fatalOpenSSL("EVP_MD_CTX_new") }
    self.algorithm = algorithm
    self.pointer = pointer
    guard EVP_DigestInit_ex(pointer, algorithm.evpMD, nil) == 1 else { fatalOpenSSL("EVP_DigestInit_ex") }
  }

  private init(copying other: DigestContext) {
    guard let pointer = EVP_MD_CTX_new() else { fatalOpenSSL("EVP_MD_CTX_new") }
    algorithm = other.algorithm
    self.pointer = pointer
    guard EVP_MD_CTX_copy_ex(pointer, other.pointer) == 1 else { fatalOpenSSL("EVP_MD_CTX_copy_ex") }
  }

  deinit { EVP_MD_CTX_free(pointer) }

  func copy() -> DigestContext { DigestContext(copying: self) }

  func update(_ bytes: UnsafeRawBufferPointer) {
    guard bytes.count > 0 else { return }
    guard EVP_DigestUpdate(pointer, bytes.baseAddress, bytes.count) == 1 else {
      fatalOpenSSL("EVP_DigestUpdate")
    }
  }

  /// Finalizes this context (callers finalize a copy).
  func finish() -> [UInt8] {
    var digest = [UInt8](repeating: 0, count: algorithm.digestSize)
    var length: UInt32 = 0
    let result = digest.withUnsafeMutableBufferPointer {
      EVP_DigestFinal_ex(pointer, $0.baseAddress, &length)
    }
    guard result == 1, Int(length) == algorithm.digestSize else { fatalOpenSSL("EVP_DigestFinal_ex") }
    return digest
  }
}

extension HashAlgorithm: CustomStringConvertible {
  /// "SHA-256" / "SHA-384", as FIPS 180-4 names them.
  public var description: String {
    switch self {
    case .sha256: "SHA-256"
    case .sha384: "SHA-384"
    }
  }
}
