internal import COpenSSL

// Deterministic ECDSA (RFC 6979 §3.2). The HMAC_DRBG that yields k runs on CoveCrypto's HMAC; every
// big-number and curve operation (bits2int, mod n, k·G, k⁻¹, s) is OpenSSL's. OpenSSL 3.0 cannot derive
// k this way itself (its "nonce-type" parameter arrived in 3.2), so k⁻¹ and r are handed to
// `ECDSA_do_sign_ex`, which computes s = k⁻¹·(e + d·r) mod n exactly as its own signing does.

extension ECPrivateKey {
  /// The RFC 6979 §3.2 signature behind `signature(forDigest:)`: raw r ‖ s, each `coordinateSize`
  /// bytes. `digest` must not be empty (checked by the caller).
  func deterministicSignature(forDigest digest: [UInt8]) throws(CryptoError) -> [UInt8] {
    guard let length = Int32(exactly: digest.count) else {
      throw CryptoError(code: .invalidParameter, operation: "ECDSA sign: digest too long")
    }
    let group = try curve.makeGroup()
    guard let order = EC_GROUP_get0_order(group.pointer) else {
      throw CryptoError.openSSL(.internalFailure, "EC_GROUP_get0_order")
    }
    let context = try makeBigNumberContext()
    let d = try makeBigNumber(scalar)
    let ecKey = try OpenSSLObject(
      cove_EC_KEY_new_by_curve_name(curve.nid), operation: "EC_KEY_new_by_curve_name"
    ) { cove_EC_KEY_free($0) }
    try check(cove_EC_KEY_set_private_key(ecKey.pointer, d.pointer), "EC_KEY_set_private_key", .invalidKey)
    var nonces = try RFC6979Nonces(
      group: group, context: context, privateKey: d,
      digest: digest, hash: RFC6979Hash(digestLength: digest.count, curve: curve))

    let point = try OpenSSLObject(EC_POINT_new(group.pointer), operation: "EC_POINT_new") {
      EC_POINT_free($0)
    }
    let x = try makeZeroBigNumber()
    let r = try makeZeroBigNumber()
    while true {
      let k = try nonces.next()
      // r = x(k·G) mod n (SEC1 §4.1.3 steps 1–3).
      try check(
        EC_POINT_mul(group.pointer, point.pointer, k.pointer, nil, nil, context.pointer), "EC_POINT_mul")
      try check(
        EC_POINT_get_affine_coordinates(group.pointer, point.pointer, x.pointer, nil, context.pointer),
        "EC_POINT_get_affine_coordinates")
      try check(BN_nnmod(r.pointer, x.pointer, order, context.pointer), "BN_nnmod")
      if BN_is_zero(r.pointer) == 1 { continue }  // RFC 6979 §3.2 step h.3: k is unsuitable
      let inverse = try OpenSSLObject(
        BN_mod_inverse(nil, k.pointer, order, context.pointer), operation: "BN_mod_inverse"
      ) { BN_clear_free($0) }
      let produced = digest.withUnsafeBufferPointer {
        cove_ECDSA_do_sign_ex($0.baseAddress, length, inverse.pointer, r.pointer, ecKey.pointer)
      }
      guard let produced else {
        if Self.failedOnZeroS() {
          _ = drainOpenSSLErrors()
          continue  // s = 0: step h.3 again, with the next k
        }
        throw CryptoError.openSSL(.invalidSignature, "ECDSA_do_sign_ex")
      }
      let signature = OpenSSLObject(owning: produced) { ECDSA_SIG_free($0) }
      guard let rOut = ECDSA_SIG_get0_r(signature.pointer), let sOut = ECDSA_SIG_get0_s(signature.pointer),
        let rBytes = bigEndianBytes(of: rOut, width: curve.coordinateSize),
        let sBytes = bigEndianBytes(of: sOut, width: curve.coordinateSize)
      else {
        throw CryptoError(code: .internalFailure, operation: "ECDSA_do_sign_ex: r or s wider than the curve")
      }
      return rBytes + sBytes
    }
  }

  /// The first k RFC 6979 §3.2 derives for `digest` (the first HMAC_DRBG candidate in [1, n-1]), as
  /// `coordinateSize` big-endian bytes, so tests can check it against the RFC's Appendix A. Signing
  /// uses this k unless it gives r = 0 or s = 0 (probability about 2⁻²⁵⁶).
  func deterministicNonce(forDigest digest: [UInt8]) throws(CryptoError) -> [UInt8] {
    let group = try curve.makeGroup()
    var nonces = try RFC6979Nonces(
      group: group, context: try makeBigNumberContext(), privateKey: try makeBigNumber(scalar),
      digest: digest, hash: RFC6979Hash(digestLength: digest.count, curve: curve))
    let k = try nonces.next()
    guard let bytes = bigEndianBytes(of: k.pointer, width: curve.coordinateSize) else {
      throw CryptoError(code: .internalFailure, operation: "RFC 6979: k wider than the curve")
    }
    return bytes
  }

  /// Whether the last OpenSSL error is `ECDSA_do_sign_ex` reporting s = 0 for the k⁻¹ and r it was
  /// given (it asks for new "setup values" instead of choosing a k of its own).
  private static func failedOnZeroS() -> Bool {
    let error = ERR_peek_last_error()
    return ERR_GET_LIB(error) == ERR_LIB_EC && ERR_GET_REASON(error) == EC_R_NEED_NEW_SETUP_VALUES
  }
}

/// The hash H of RFC 6979's HMAC_DRBG. §3.2 uses the hash that produced the signed digest, but
/// `signature(forDigest:)` receives only the digest, so H is recognised by its length among SHA-1 and
/// SHA-2 (FIPS 180-4): SPDM's SHA-256 and SHA-384 and the RFC's Appendix A vectors all fall here.
/// A digest of any other length runs the DRBG with the curve's own hash (SHA-256 for P-256, SHA-384
/// for P-384): k is still an HMAC_DRBG output keyed by the private key and the digest, so just as
/// deterministic and unpredictable, only not reproducible by another RFC 6979 implementation.
struct RFC6979Hash {
  /// OpenSSL's digest name, for `EVP_MAC` "HMAC".
  let openSSLName: String
  /// hlen / 8.
  let size: Int

  init(digestLength: Int, curve: EllipticCurve) {
    switch digestLength {
    case 20: (openSSLName, size) = ("SHA1", 20)
    case 28: (openSSLName, size) = ("SHA224", 28)
    case 32: (openSSLName, size) = ("SHA256", 32)
    case 48: (openSSLName, size) = ("SHA384", 48)
    case 64: (openSSLName, size) = ("SHA512", 64)
    default:
      switch curve {
      case .p256: (openSSLName, size) = ("SHA256", 32)
      case .p384: (openSSLName, size) = ("SHA384", 48)
      }
    }
  }

  func mac(key: [UInt8], _ data: [UInt8]) -> [UInt8] {
    HMAC.authenticate(digestNamed: openSSLName, tagSize: size, key: key, data: data)
  }
}

/// The HMAC_DRBG of RFC 6979 §3.2 steps b–h: successive candidates k in [1, n-1], each a BIGNUM
/// flagged constant-time. The first call to `next()` returns the RFC's k; each later call first
/// applies step h.3 (K = HMAC_K(V ‖ 0x00), V = HMAC_K(V)), which is what the RFC prescribes when a k
/// was unsuitable (r = 0 or s = 0).
struct RFC6979Nonces {
  private let group: OpenSSLObject  // keeps `order` alive
  private let order: OpaquePointer
  private let context: OpenSSLObject
  private let hash: RFC6979Hash
  /// qlen: the bit length of the group order n.
  private let orderBits: Int
  private var key: [UInt8]  // K
  private var value: [UInt8]  // V
  private var hasYielded = false

  /// `privateKey` is x (the scalar d); `digest` is h1 = H(m), of any length.
  init(
    group: OpenSSLObject, context: OpenSSLObject, privateKey: OpenSSLObject, digest: [UInt8],
    hash: RFC6979Hash
  ) throws(CryptoError) {
    guard let order = EC_GROUP_get0_order(group.pointer) else {
      throw CryptoError.openSSL(.internalFailure, "EC_GROUP_get0_order")
    }
    self.group = group
    self.order = order
    self.context = context
    self.hash = hash
    orderBits = Int(BN_num_bits(order))
    // §2.3.3 int2octets(x) and §2.3.4 bits2octets(h1), both rlen = 8·⌈qlen/8⌉ bits.
    let octets = (orderBits + 7) / 8
    guard let x = bigEndianBytes(of: privateKey.pointer, width: octets) else {
      throw CryptoError(code: .invalidKey, operation: "RFC 6979: private key wider than the order")
    }
    let h1 = try Self.bits2octets(
      digest, orderBits: orderBits, order: order, octets: octets, context: context)
    // Steps b–g.
    value = [UInt8](repeating: 0x01, count: hash.size)
    key = [UInt8](repeating: 0x00, count: hash.size)
    key = hash.mac(key: key, value + [0x00] + x + h1)
    value = hash.mac(key: key, value)
    key = hash.mac(key: key, value + [0x01] + x + h1)
    value = hash.mac(key: key, value)
  }

  /// Step h: the next k with 1 ≤ k ≤ n-1.
  mutating func next() throws(CryptoError) -> OpenSSLObject {
    while true {
      if hasYielded {  // step h.3, after a k out of range or one the caller found unsuitable
        key = hash.mac(key: key, value + [0x00])
        value = hash.mac(key: key, value)
      }
      hasYielded = true
      // Steps h.1–h.2: T = V ‖ V' ‖ ... until it has at least qlen bits.
      var t: [UInt8] = []
      while t.count * 8 < orderBits {
        value = hash.mac(key: key, value)
        t += value
      }
      let k = try Self.bits2int(t, orderBits: orderBits)
      BN_set_flags(k.pointer, BN_FLG_CONSTTIME)
      if BN_is_zero(k.pointer) == 0, BN_cmp(k.pointer, order) < 0 {
        return k
      }
    }
  }

  /// §2.3.2 bits2int: the leftmost qlen bits of `bytes` as an integer (a shorter input is taken
  /// whole, as if left-padded with zeros).
  private static func bits2int(_ bytes: [UInt8], orderBits: Int) throws(CryptoError) -> OpenSSLObject {
    let number = try makeBigNumber(bytes)
    let excess = bytes.count * 8 - orderBits
    if excess > 0 {
      try check(BN_rshift(number.pointer, number.pointer, Int32(excess)), "BN_rshift")
    }
    return number
  }

  /// §2.3.4 bits2octets: bits2int reduced mod n, as rlen/8 bytes.
  private static func bits2octets(
    _ bytes: [UInt8], orderBits: Int, order: OpaquePointer, octets: Int, context: OpenSSLObject
  ) throws(CryptoError) -> [UInt8] {
    let z1 = try bits2int(bytes, orderBits: orderBits)
    let z2 = try makeZeroBigNumber()
    try check(BN_nnmod(z2.pointer, z1.pointer, order, context.pointer), "BN_nnmod")
    guard let encoded = bigEndianBytes(of: z2.pointer, width: octets) else {
      throw CryptoError(code: .internalFailure, operation: "RFC 6979 bits2octets")
    }
    return encoded
  }
}

/// A scratch `BN_CTX` for modular arithmetic.
func makeBigNumberContext() throws(CryptoError) -> OpenSSLObject {
  try OpenSSLObject(BN_CTX_new(), operation: "BN_CTX_new") { BN_CTX_free($0) }
}

/// A fresh BIGNUM (value 0), cleared when freed because it may hold secret intermediates.
private func makeZeroBigNumber() throws(CryptoError) -> OpenSSLObject {
  try OpenSSLObject(BN_new(), operation: "BN_new") { BN_clear_free($0) }
}
