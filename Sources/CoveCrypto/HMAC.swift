internal import COpenSSL

/// HMAC (RFC 2104, FIPS 198-1) through OpenSSL 3's `EVP_MAC` "HMAC".
///
/// SPDM uses HMAC for the key schedule (via HKDF) and for the `VerifyData` of FINISH / PSK_FINISH
/// (DSP0274 §"FINISH request and RESPONSE_FINISH response").
public enum HMAC {
  /// The full-length tag (`algorithm.digestSize` bytes). Any key length is valid (RFC 2104 §2: longer
  /// keys are hashed, shorter ones zero-padded), so this cannot fail on input.
  public static func authenticate(_ algorithm: HashAlgorithm, key: [UInt8], data: [UInt8]) -> [UInt8] {
    authenticate(digestNamed: algorithm.openSSLName, tagSize: algorithm.digestSize, key: key, data: data)
  }

  /// HMAC over any digest OpenSSL knows by `name` ("SHA1", "SHA512", ...), whose output is `tagSize`
  /// bytes. Internal: RFC 6979 runs its DRBG with the hash that produced the signed digest, which may
  /// be one `HashAlgorithm` does not list.
  static func authenticate(digestNamed name: String, tagSize: Int, key: [UInt8], data: [UInt8]) -> [UInt8] {
    guard let fetched = EVP_MAC_fetch(nil, "HMAC", nil) else { fatalOpenSSL("EVP_MAC_fetch(HMAC)") }
    let mac = OpenSSLObject(owning: fetched) { EVP_MAC_free($0) }
    guard let allocated = EVP_MAC_CTX_new(mac.pointer) else { fatalOpenSSL("EVP_MAC_CTX_new") }
    let owner = OpenSSLObject(owning: allocated) { EVP_MAC_CTX_free($0) }
    let context = owner.pointer

    let parameters = ParameterList()
    parameters.add(OSSL_MAC_PARAM_DIGEST, utf8: name)
    var tag = [UInt8](repeating: 0, count: tagSize)
    var length = 0
    let ok = parameters.withParameters { params in
      withNonNullBytes(key) { keyPointer, keyLength in
        guard EVP_MAC_init(context, keyPointer, keyLength, params) == 1 else { return false }
        let updated = data.withUnsafeBufferPointer {
          $0.isEmpty ? 1 : EVP_MAC_update(context, $0.baseAddress, $0.count)
        }
        guard updated == 1 else { return false }
        return tag.withUnsafeMutableBufferPointer {
          EVP_MAC_final(context, $0.baseAddress, &length, $0.count) == 1
        }
      }
    }
    guard ok, length == tagSize else { fatalOpenSSL("HMAC") }
    return tag
  }
}
