internal import COpenSSL

/// An ECDSA signing / ECDH key on P-256 or P-384.
///
/// `@unchecked Sendable`: the wrapped `EVP_PKEY` is immutable after construction and every operation
/// uses its own `EVP_PKEY_CTX`.
public final class ECPrivateKey: @unchecked Sendable {
  public let curve: EllipticCurve
  /// The matching public key, computed once at construction.
  public let publicKey: ECPublicKey
  let pkey: OpenSSLObject

  /// Draws a scalar from `entropy`, `coordinateSize` bytes at a time, until 1 ≤ d < n (the rejection
  /// sampling of FIPS 186-4 §B.4.2 "testing candidates"), so a `SeededEntropy` always yields the
  /// same key. For P-256 and P-384 the order is close to 2^bits, so a retry is astronomically rare.
  public convenience init(curve: EllipticCurve, entropy: any EntropySource) throws(CryptoError) {
    let order = try Self.order(of: curve)
    while true {
      let candidate = entropy.bytes(count: curve.coordinateSize)
      guard candidate.count == curve.coordinateSize else {
        throw CryptoError(code: .internalFailure, operation: "EntropySource returned too few bytes")
      }
      if Self.isValidScalar(candidate, order: order) {
        try self.init(curve: curve, scalar: candidate)
        return
      }
    }
  }

  /// A key from its big-endian private scalar (at most `coordinateSize` bytes; shorter is
  /// left-padded). Throws `.invalidKey` unless 1 ≤ d < n (SEC1 §3.2.1).
  public init(curve: EllipticCurve, scalar: [UInt8]) throws(CryptoError) {
    guard scalar.count <= curve.coordinateSize else {
      throw CryptoError(code: .invalidKey, operation: "ECPrivateKey: scalar longer than the curve order")
    }
    let padded = [UInt8](repeating: 0, count: curve.coordinateSize - scalar.count) + scalar
    guard Self.isValidScalar(padded, order: try Self.order(of: curve)) else {
      throw CryptoError(code: .invalidKey, operation: "ECPrivateKey: scalar not in [1, n-1]")
    }
    // Q = d·G; OpenSSL 3.0's EVP_PKEY_fromdata does not derive it from the private scalar.
    let group = try curve.makeGroup()
    let point = try OpenSSLObject(EC_POINT_new(group.pointer), operation: "EC_POINT_new") {
      EC_POINT_free($0)
    }
    let d = try makeBigNumber(padded)
    try check(EC_POINT_mul(group.pointer, point.pointer, d.pointer, nil, nil, nil), "EC_POINT_mul")
    var encodedPoint = [UInt8](repeating: 0, count: 1 + 2 * curve.coordinateSize)
    let written = EC_POINT_point2oct(
      group.pointer, point.pointer, POINT_CONVERSION_UNCOMPRESSED, &encodedPoint, encodedPoint.count, nil)
    guard written == encodedPoint.count else {
      throw CryptoError.openSSL(.internalFailure, "EC_POINT_point2oct")
    }

    let parameters = ParameterList()
    parameters.add(OSSL_PKEY_PARAM_GROUP_NAME, utf8: curve.groupName)
    parameters.add(OSSL_PKEY_PARAM_PRIV_KEY, unsignedBigEndian: padded)
    parameters.add(OSSL_PKEY_PARAM_PUB_KEY, octets: encodedPoint)
    let pkey = try makeECKey(
      parameters, selection: cove_EVP_PKEY_KEYPAIR(), operation: "ECPrivateKey(scalar:)")
    self.curve = curve
    self.pkey = pkey
    self.publicKey = try ECPublicKey(curve: curve, rawXY: Array(encodedPoint.dropFirst()))
  }

  /// Parses PEM "PRIVATE KEY" (PKCS#8, RFC 5208 / RFC 5958) or "EC PRIVATE KEY" (SEC1 §C.4,
  /// RFC 5915), unencrypted, on P-256 or P-384.
  public convenience init(pem: String) throws(CryptoError) {
    let input = try ReadOnlyBIO(Array(pem.utf8), operation: "BIO_new_mem_buf")
    let pkey = try OpenSSLObject(
      PEM_read_bio_PrivateKey(input.bio.pointer, nil, nil, nil), operation: "PEM_read_bio_PrivateKey",
      code: .decodingFailed
    ) { EVP_PKEY_free($0) }
    guard let curve = EllipticCurve(of: pkey.pointer),
      let scalar = bigNumberParameter(pkey.pointer, OSSL_PKEY_PARAM_PRIV_KEY, width: curve.coordinateSize)
    else {
      throw CryptoError(code: .invalidKey, operation: "ECPrivateKey(pem:): not a P-256 or P-384 private key")
    }
    // Rebuild from the scalar so the public key is recomputed rather than trusted from the file.
    try self.init(curve: curve, scalar: scalar)
  }

  /// The private scalar d, big-endian, exactly `coordinateSize` bytes.
  public var scalar: [UInt8] {
    guard let bytes = bigNumberParameter(pkey.pointer, OSSL_PKEY_PARAM_PRIV_KEY, width: curve.coordinateSize)
    else { fatalOpenSSL("EVP_PKEY_get_bn_param(priv)") }
    return bytes
  }

  /// Unencrypted PKCS#8 PEM ("-----BEGIN PRIVATE KEY-----", RFC 5958 / RFC 7468 §10).
  public func pemRepresentation() -> String {
    do {
      let output = try makeMemoryBIO("BIO_new")
      try check(
        PEM_write_bio_PrivateKey(output.pointer, pkey.pointer, nil, nil, 0, nil, nil),
        "PEM_write_bio_PrivateKey")
      return String(decoding: contents(of: output), as: UTF8.self)
    } catch {
      fatalError("\(error)")
    }
  }

  /// ECDSA (FIPS 186-4 §6.4, SEC1 §4.1.3) over a precomputed digest, with the per-message secret k
  /// derived from the private key and the digest as RFC 6979 §3.2 specifies (an HMAC_DRBG; see
  /// ECPrivateKey+RFC6979.swift). Returns SPDM's raw r ‖ s, each left-padded to `coordinateSize`.
  ///
  /// Deterministic so that runs with the same seed produce byte-identical traces: everything else
  /// random in Cove comes from an injected `EntropySource`, and a random k would make every
  /// CHALLENGE_AUTH, MEASUREMENTS and KEY_EXCHANGE_RSP signature differ from run to run. This costs no
  /// security: to anyone without the private key k is indistinguishable from a random one (RFC 6979
  /// §3, §5), the signatures are ordinary ECDSA that any verifier accepts, and FIPS 186-5 approves the
  /// scheme as deterministic ECDSA. It also removes the nonce-reuse risk of a random k (a repeated or
  /// biased k reveals the key): k repeats only when the key and the digest both do, and then so does
  /// the whole signature. Same key and digest, same signature.
  public func signature(forDigest digest: [UInt8]) throws(CryptoError) -> [UInt8] {
    guard !digest.isEmpty else {
      throw CryptoError(code: .invalidParameter, operation: "ECDSA sign: empty digest")
    }
    return try deterministicSignature(forDigest: digest)
  }

  /// ECDSA over `hash.hash(message)`.
  public func signature(for message: [UInt8], hash: HashAlgorithm) throws(CryptoError) -> [UInt8] {
    try signature(forDigest: hash.hash(message))
  }

  /// ECDH (SEC1 §3.3.1): the X coordinate of d·Q_peer, `coordinateSize` bytes, as SPDM's
  /// KEY_EXCHANGE uses it for the shared secret (DSP0274 §"Diffie-Hellman"). Throws `.curveMismatch`
  /// when the peer is on another curve.
  public func sharedSecret(with peer: ECPublicKey) throws(CryptoError) -> [UInt8] {
    guard peer.curve == curve else {
      throw CryptoError(code: .curveMismatch, operation: "ECDH: peer key is on another curve")
    }
    let context = try OpenSSLObject(
      EVP_PKEY_CTX_new_from_pkey(nil, pkey.pointer, nil), operation: "EVP_PKEY_CTX_new_from_pkey"
    ) { EVP_PKEY_CTX_free($0) }
    try check(EVP_PKEY_derive_init(context.pointer), "EVP_PKEY_derive_init")
    try check(
      EVP_PKEY_derive_set_peer(context.pointer, peer.pkey.pointer), "EVP_PKEY_derive_set_peer", .invalidKey)
    var length = 0
    try check(EVP_PKEY_derive(context.pointer, nil, &length), "EVP_PKEY_derive")
    var secret = [UInt8](repeating: 0, count: length)
    try check(EVP_PKEY_derive(context.pointer, &secret, &length), "EVP_PKEY_derive")
    guard length == curve.coordinateSize else {
      throw CryptoError(code: .internalFailure, operation: "ECDH: unexpected secret length \(length)")
    }
    return secret
  }

  private static func order(of curve: EllipticCurve) throws(CryptoError) -> [UInt8] {
    let group = try curve.makeGroup()
    guard let order = EC_GROUP_get0_order(group.pointer),
      let bytes = bigEndianBytes(of: order, width: curve.coordinateSize)
    else { throw CryptoError.openSSL(.internalFailure, "EC_GROUP_get0_order") }
    return bytes
  }

  /// 1 ≤ candidate < order, both big-endian of equal width.
  private static func isValidScalar(_ candidate: [UInt8], order: [UInt8]) -> Bool {
    guard candidate.contains(where: { $0 != 0 }) else { return false }
    for (c, n) in zip(candidate, order) where c != n {
      return c < n
    }
    return false  // equal to the order
  }
}
