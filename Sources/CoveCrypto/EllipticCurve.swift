internal import COpenSSL

/// The NIST prime curves SPDM uses for ECDSA and ECDHE (DSP0274 `BaseAsymAlgo`
/// TPM_ALG_ECDSA_ECC_NIST_P256/P384, `DHE` secp256r1/secp384r1; curves from FIPS 186-4 / SEC 2).
public enum EllipticCurve: Sendable, Hashable {
  case p256
  case p384

  /// Bytes in one field element or scalar. SPDM's raw encodings are fixed-width: a public key is
  /// X ‖ Y (2 × this), an ECDSA signature is r ‖ s (2 × this), an ECDH secret is X (this).
  public var coordinateSize: Int {
    switch self {
    case .p256: 32
    case .p384: 48
    }
  }

  /// OpenSSL's group name (`OSSL_PKEY_PARAM_GROUP_NAME`).
  var groupName: String {
    switch self {
    case .p256: "prime256v1"
    case .p384: "secp384r1"
    }
  }

  var nid: Int32 {
    switch self {
    case .p256: NID_X9_62_prime256v1
    case .p384: NID_secp384r1
    }
  }

  init?(groupName: String) {
    switch groupName {
    case "prime256v1", "P-256", "secp256r1": self = .p256
    case "secp384r1", "P-384": self = .p384
    default: return nil
    }
  }

  /// The curve of an EC `EVP_PKEY`, or nil when it is not EC or not a supported curve.
  init?(of pkey: OpaquePointer) {
    guard EVP_PKEY_is_a(pkey, "EC") == 1 else { return nil }
    var buffer = [CChar](repeating: 0, count: 64)
    var length = 0
    let ok = buffer.withUnsafeMutableBufferPointer {
      EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, $0.baseAddress, $0.count, &length)
    }
    guard ok == 1 else {
      _ = drainOpenSSLErrors()
      return nil
    }
    let name = String(decoding: buffer.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    self.init(groupName: name)
  }

  /// A fresh `EC_GROUP` for point arithmetic.
  func makeGroup() throws(CryptoError) -> OpenSSLObject {
    try OpenSSLObject(EC_GROUP_new_by_curve_name(nid), operation: "EC_GROUP_new_by_curve_name") {
      EC_GROUP_free($0)
    }
  }
}

/// A BIGNUM owner built from unsigned big-endian bytes.
func makeBigNumber(_ bytes: [UInt8]) throws(CryptoError) -> OpenSSLObject {
  let pointer = bytes.withUnsafeBufferPointer { BN_bin2bn($0.baseAddress, Int32($0.count), nil) }
  return try OpenSSLObject(pointer, operation: "BN_bin2bn") { BN_clear_free($0) }
}

/// Left-padded big-endian bytes of a BIGNUM, or nil when it does not fit in `width` bytes.
func bigEndianBytes(of number: OpaquePointer, width: Int) -> [UInt8]? {
  var output = [UInt8](repeating: 0, count: width)
  let written = output.withUnsafeMutableBufferPointer { BN_bn2binpad(number, $0.baseAddress, Int32(width)) }
  return written == Int32(width) ? output : nil
}

/// Reads a BIGNUM parameter (e.g. "priv", "qx") of an `EVP_PKEY` as `width` big-endian bytes.
func bigNumberParameter(_ pkey: OpaquePointer, _ name: String, width: Int) -> [UInt8]? {
  var number: OpaquePointer? = nil
  guard EVP_PKEY_get_bn_param(pkey, name, &number) == 1, let number else {
    _ = drainOpenSSLErrors()
    return nil
  }
  defer { BN_clear_free(number) }  // immediately released; not worth an owner object
  return bigEndianBytes(of: number, width: width)
}

/// Builds an EC `EVP_PKEY` from OSSL_PARAMs (OpenSSL 3 "EVP_PKEY_fromdata").
func makeECKey(_ parameters: ParameterList, selection: Int32, operation: String) throws(CryptoError)
  -> OpenSSLObject
{
  let context = try OpenSSLObject(
    EVP_PKEY_CTX_new_from_name(nil, "EC", nil), operation: "EVP_PKEY_CTX_new_from_name"
  ) { EVP_PKEY_CTX_free($0) }
  try check(EVP_PKEY_fromdata_init(context.pointer), "EVP_PKEY_fromdata_init")
  var pkey: OpaquePointer? = nil
  let result = parameters.withParameters { EVP_PKEY_fromdata(context.pointer, &pkey, selection, $0) }
  try check(result, operation, .invalidKey)
  return try OpenSSLObject(pkey, operation: operation, code: .invalidKey) { EVP_PKEY_free($0) }
}

/// DER-encodes with an OpenSSL `i2d_*` function (called once for the length, once to write).
func encodeDER(
  _ operation: String, _ encode: (UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>?) -> Int32
) throws(CryptoError) -> [UInt8] {
  let length = encode(nil)
  guard length > 0 else { throw CryptoError.openSSL(.internalFailure, operation) }
  var output = [UInt8](repeating: 0, count: Int(length))
  let written = output.withUnsafeMutableBufferPointer { buffer in
    var cursor: UnsafeMutablePointer<UInt8>? = buffer.baseAddress
    return encode(&cursor)
  }
  guard written == length else { throw CryptoError.openSSL(.internalFailure, operation) }
  return output
}

/// Decodes with an OpenSSL `d2i_*` function into an owner, rejecting trailing bytes (DER is one TLV;
/// anything after it means the caller framed the object wrongly, X.690 §8.1.1).
func decodeDER(
  _ der: [UInt8], _ operation: String,
  free release: @escaping (OpaquePointer) -> Void,
  decode: (UnsafeMutablePointer<UnsafePointer<UInt8>?>, Int) -> OpaquePointer?
) throws(CryptoError) -> OpenSSLObject {
  var consumed = 0
  let pointer: OpaquePointer? = der.withUnsafeBufferPointer { buffer in
    guard let base = buffer.baseAddress else { return nil }
    var cursor: UnsafePointer<UInt8>? = base
    let object = decode(&cursor, buffer.count)
    if let cursor { consumed = cursor - base }
    return object
  }
  let object = try OpenSSLObject(pointer, operation: operation, code: .decodingFailed, free: release)
  guard consumed == der.count else {
    throw CryptoError(code: .decodingFailed, operation: "\(operation): trailing bytes after DER")
  }
  return object
}

extension EllipticCurve: CustomStringConvertible {
  /// "P-256" / "P-384", as FIPS 186-4 names them.
  public var description: String {
    switch self {
    case .p256: "P-256"
    case .p384: "P-384"
    }
  }
}
