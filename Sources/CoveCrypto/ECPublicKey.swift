internal import COpenSSL

/// An ECDSA verification / ECDH peer key on P-256 or P-384.
///
/// `@unchecked Sendable`: the wrapped `EVP_PKEY` is immutable after construction and every operation
/// uses its own `EVP_PKEY_CTX`, which OpenSSL 3 documents as safe across threads.
public final class ECPublicKey: @unchecked Sendable, Hashable {
  public let curve: EllipticCurve
  /// Uncompressed X ‖ Y, each `curve.coordinateSize` bytes (SPDM's raw public key encoding, the SEC1
  /// §2.3.3 uncompressed point without its 0x04 prefix).
  public let rawXY: [UInt8]
  let pkey: OpenSSLObject

  /// Rejects a wrong length and points that are not on the curve (SEC1 §3.2.2.1 public key
  /// validation, via `EVP_PKEY_public_check`), so a hostile peer cannot mount invalid-curve attacks.
  public init(curve: EllipticCurve, rawXY: [UInt8]) throws(CryptoError) {
    guard rawXY.count == 2 * curve.coordinateSize else {
      throw CryptoError(
        code: .invalidKey, operation: "ECPublicKey: raw X‖Y must be \(2 * curve.coordinateSize) bytes")
    }
    let parameters = ParameterList()
    parameters.add(OSSL_PKEY_PARAM_GROUP_NAME, utf8: curve.groupName)
    parameters.add(OSSL_PKEY_PARAM_PUB_KEY, octets: [0x04] + rawXY)
    let pkey = try makeECKey(
      parameters, selection: cove_EVP_PKEY_PUBLIC_KEY(), operation: "ECPublicKey(rawXY:)")
    try Self.checkPublic(pkey)
    self.curve = curve
    self.rawXY = rawXY
    self.pkey = pkey
  }

  /// Parses a DER SubjectPublicKeyInfo (RFC 5280 §4.1.2.7, RFC 5480 §2) with an id-ecPublicKey
  /// algorithm and a P-256 or P-384 named curve. Trailing bytes are rejected.
  public convenience init(subjectPublicKeyInfoDER der: [UInt8]) throws(CryptoError) {
    let pkey = try decodeDER(
      der, "d2i_PUBKEY", free: { EVP_PKEY_free($0) },
      decode: { d2i_PUBKEY(nil, $0, $1) })
    try self.init(pkey: pkey, operation: "ECPublicKey(subjectPublicKeyInfoDER:)")
  }

  /// Adopts an EC `EVP_PKEY` (public part), checking curve and point.
  init(pkey: OpenSSLObject, operation: String) throws(CryptoError) {
    guard let curve = EllipticCurve(of: pkey.pointer) else {
      throw CryptoError(code: .invalidKey, operation: "\(operation): not a P-256 or P-384 key")
    }
    try Self.checkPublic(pkey)
    guard let x = bigNumberParameter(pkey.pointer, OSSL_PKEY_PARAM_EC_PUB_X, width: curve.coordinateSize),
      let y = bigNumberParameter(pkey.pointer, OSSL_PKEY_PARAM_EC_PUB_Y, width: curve.coordinateSize)
    else {
      throw CryptoError.openSSL(.invalidKey, "\(operation): reading the public point")
    }
    self.curve = curve
    self.rawXY = x + y
    self.pkey = pkey
  }

  private static func checkPublic(_ pkey: OpenSSLObject) throws(CryptoError) {
    let context = try OpenSSLObject(
      EVP_PKEY_CTX_new_from_pkey(nil, pkey.pointer, nil), operation: "EVP_PKEY_CTX_new_from_pkey"
    ) { EVP_PKEY_CTX_free($0) }
    try check(EVP_PKEY_public_check(context.pointer), "EVP_PKEY_public_check", .invalidKey)
  }

  /// DER SubjectPublicKeyInfo (RFC 5480), the form certificates and `openssl pkey -pubin` use.
  public var subjectPublicKeyInfoDER: [UInt8] {
    do {
      return try encodeDER("i2d_PUBKEY") { i2d_PUBKEY(pkey.pointer, $0) }
    } catch {
      fatalError("\(error)")
    }
  }

  /// PEM "PUBLIC KEY" (RFC 7468 §13) of the SubjectPublicKeyInfo.
  public var pemRepresentation: String {
    pemEncode(label: "PUBLIC KEY", der: subjectPublicKeyInfoDER)
  }

  /// ECDSA verification (FIPS 186-4 §6.4, SEC1 §4.1.4) of a raw r ‖ s signature over a precomputed
  /// digest. Any malformed input simply yields false.
  public func isValidSignature(_ rawSignature: [UInt8], forDigest digest: [UInt8]) -> Bool {
    guard rawSignature.count == 2 * curve.coordinateSize, !digest.isEmpty,
      let der = try? ECDSASignatureEncoding.der(fromRaw: rawSignature),
      let context = try? OpenSSLObject(
        EVP_PKEY_CTX_new_from_pkey(nil, pkey.pointer, nil), operation: "EVP_PKEY_CTX_new_from_pkey",
        free: { EVP_PKEY_CTX_free($0) })
    else {
      _ = drainOpenSSLErrors()
      return false
    }
    guard EVP_PKEY_verify_init(context.pointer) == 1 else {
      _ = drainOpenSSLErrors()
      return false
    }
    let result = EVP_PKEY_verify(context.pointer, der, der.count, digest, digest.count)
    _ = drainOpenSSLErrors()  // a failed verification leaves reasons on the queue; they are not errors
    return result == 1
  }

  /// ECDSA verification of `message` hashed with `hash`.
  public func isValidSignature(_ rawSignature: [UInt8], for message: [UInt8], hash: HashAlgorithm) -> Bool {
    isValidSignature(rawSignature, forDigest: hash.hash(message))
  }

  public static func == (lhs: ECPublicKey, rhs: ECPublicKey) -> Bool {
    lhs.curve == rhs.curve && lhs.rawXY == rhs.rawXY
  }

  public func hash(into hasher: inout Hasher) {
    hasher.combine(curve)
    hasher.combine(rawXY)
  }
}

/// RFC 7468 textual encoding with 64-character base64 lines.
func pemEncode(label: String, der: [UInt8]) -> String {
  let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
  var encoded: [UInt8] = []
  var index = 0
  while index < der.count {
    let chunk = Array(der[index..<min(index + 3, der.count)])
    let value =
      (UInt32(chunk[0]) << 16) | (chunk.count > 1 ? UInt32(chunk[1]) << 8 : 0)
      | (chunk.count > 2 ? UInt32(chunk[2]) : 0)
    encoded.append(alphabet[Int((value >> 18) & 63)])
    encoded.append(alphabet[Int((value >> 12) & 63)])
    encoded.append(chunk.count > 1 ? alphabet[Int((value >> 6) & 63)] : UInt8(ascii: "="))
    encoded.append(chunk.count > 2 ? alphabet[Int(value & 63)] : UInt8(ascii: "="))
    index += 3
  }
  var text = "-----BEGIN \(label)-----\n"
  var offset = 0
  while offset < encoded.count {
    let end = min(offset + 64, encoded.count)
    text += String(decoding: encoded[offset..<end], as: UTF8.self) + "\n"
    offset = end
  }
  text += "-----END \(label)-----\n"
  return text
}
