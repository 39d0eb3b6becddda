internal import COpenSSL

/// HKDF (RFC 5869) through OpenSSL 3's `EVP_KDF` "HKDF", with the two steps exposed separately
/// because SPDM's key schedule (DSP0274 §"Key schedule") chains Extract and several Expand calls
/// (HKDF-Expand-Label style "bin_str" infos) rather than using the combined mode.
public enum HKDF {
  /// HKDF-Extract (RFC 5869 §2.2): PRK = HMAC-Hash(salt, IKM), `digestSize` bytes. An empty salt
  /// behaves as `HashLen` zero bytes, as the RFC specifies (HMAC zero-pads short keys).
  public static func extract(_ algorithm: HashAlgorithm, salt: [UInt8], inputKeyMaterial: [UInt8])
    -> [UInt8]
  {
    let parameters = ParameterList()
    parameters.add(OSSL_KDF_PARAM_MODE, int: Int32(EVP_KDF_HKDF_MODE_EXTRACT_ONLY))
    parameters.add(OSSL_KDF_PARAM_DIGEST, utf8: algorithm.openSSLName)
    parameters.add(OSSL_KDF_PARAM_KEY, octets: inputKeyMaterial)
    parameters.add(OSSL_KDF_PARAM_SALT, octets: salt)
    do {
      return try derive(parameters, outputLength: algorithm.digestSize, operation: "HKDF.extract")
    } catch {
      fatalError("\(error)")
    }
  }

  /// HKDF-Expand (RFC 5869 §2.3): OKM of `outputLength` bytes.
  ///
  /// Throws `.invalidParameter` when `outputLength` is negative or above 255 × HashLen (the RFC's
  /// limit, since the block counter is one octet). A zero length yields an empty key without calling
  /// OpenSSL, which rejects empty outputs.
  public static func expand(
    _ algorithm: HashAlgorithm, pseudoRandomKey: [UInt8], info: [UInt8], outputLength: Int
  ) throws(CryptoError) -> [UInt8] {
    guard outputLength >= 0, outputLength <= 255 * algorithm.digestSize else {
      throw CryptoError(code: .invalidParameter, operation: "HKDF.expand: L > 255 * HashLen")
    }
    guard !pseudoRandomKey.isEmpty else {
      throw CryptoError(code: .invalidParameter, operation: "HKDF.expand: empty PRK")
    }
    if outputLength == 0 { return [] }
    let parameters = ParameterList()
    parameters.add(OSSL_KDF_PARAM_MODE, int: Int32(EVP_KDF_HKDF_MODE_EXPAND_ONLY))
    parameters.add(OSSL_KDF_PARAM_DIGEST, utf8: algorithm.openSSLName)
    parameters.add(OSSL_KDF_PARAM_KEY, octets: pseudoRandomKey)
    parameters.add(OSSL_KDF_PARAM_INFO, octets: info)
    return try derive(parameters, outputLength: outputLength, operation: "HKDF.expand")
  }

  private static func derive(_ parameters: ParameterList, outputLength: Int, operation: String)
    throws(CryptoError) -> [UInt8]
  {
    let kdf = try OpenSSLObject(EVP_KDF_fetch(nil, "HKDF", nil), operation: "EVP_KDF_fetch(HKDF)") {
      EVP_KDF_free($0)
    }
    let context = try OpenSSLObject(EVP_KDF_CTX_new(kdf.pointer), operation: "EVP_KDF_CTX_new") {
      EVP_KDF_CTX_free($0)
    }
    var output = [UInt8](repeating: 0, count: outputLength)
    let result = parameters.withParameters { params in
      output.withUnsafeMutableBufferPointer {
        EVP_KDF_derive(context.pointer, $0.baseAddress, $0.count, params)
      }
    }
    try check(result, operation)
    return output
  }
}
