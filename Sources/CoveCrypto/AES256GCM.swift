internal import COpenSSL

/// AES-256 in Galois/Counter Mode (NIST SP 800-38D), as SPDM secured messages use it (DSP0277
/// §"AEAD"): 32-byte key, 96-bit IV (the SP 800-38D §8.2.1 deterministic construction), 128-bit tag.
public enum AES256GCM {
  public static let keySize = 32
  public static let ivSize = 12
  public static let tagSize = 16

  /// GCM-AE (SP 800-38D §7.1). Throws `.invalidParameter` on a wrong key or IV size.
  public static func seal(key: [UInt8], iv: [UInt8], plaintext: [UInt8], additionalData: [UInt8])
    throws(CryptoError) -> (ciphertext: [UInt8], tag: [UInt8])
  {
    try validate(key: key, iv: iv, operation: "AES256GCM.seal")
    let context = try makeContext()
    try check(
      EVP_EncryptInit_ex(context.pointer, EVP_aes_256_gcm(), nil, key, iv), "EVP_EncryptInit_ex")
    try feed(context, additionalData: additionalData, encrypting: true)
    var ciphertext = [UInt8](repeating: 0, count: plaintext.count)
    if !plaintext.isEmpty {
      var written: Int32 = 0
      try check(
        EVP_EncryptUpdate(context.pointer, &ciphertext, &written, plaintext, Int32(plaintext.count)),
        "EVP_EncryptUpdate")
    }
    var tail = [UInt8](repeating: 0, count: 16)
    var tailLength: Int32 = 0
    try check(EVP_EncryptFinal_ex(context.pointer, &tail, &tailLength), "EVP_EncryptFinal_ex")
    var tag = [UInt8](repeating: 0, count: tagSize)
    try check(
      EVP_CIPHER_CTX_ctrl(context.pointer, EVP_CTRL_GCM_GET_TAG, Int32(tagSize), &tag),
      "EVP_CTRL_GCM_GET_TAG")
    return (ciphertext, tag)
  }

  /// GCM-AD (SP 800-38D §7.2). Throws `.authenticationFailure` when the tag does not match, in which
  /// case no plaintext is released; `.invalidParameter` on a wrong key, IV or tag size.
  public static func open(
    key: [UInt8], iv: [UInt8], ciphertext: [UInt8], tag: [UInt8], additionalData: [UInt8]
  ) throws(CryptoError) -> [UInt8] {
    try validate(key: key, iv: iv, operation: "AES256GCM.open")
    guard tag.count == tagSize else {
      throw CryptoError(code: .invalidParameter, operation: "AES256GCM.open: tag must be 16 bytes")
    }
    let context = try makeContext()
    try check(
      EVP_DecryptInit_ex(context.pointer, EVP_aes_256_gcm(), nil, key, iv), "EVP_DecryptInit_ex")
    try feed(context, additionalData: additionalData, encrypting: false)
    var plaintext = [UInt8](repeating: 0, count: ciphertext.count)
    if !ciphertext.isEmpty {
      var written: Int32 = 0
      try check(
        EVP_DecryptUpdate(context.pointer, &plaintext, &written, ciphertext, Int32(ciphertext.count)),
        "EVP_DecryptUpdate")
    }
    var expectedTag = tag
    try check(
      EVP_CIPHER_CTX_ctrl(context.pointer, EVP_CTRL_GCM_SET_TAG, Int32(tagSize), &expectedTag),
      "EVP_CTRL_GCM_SET_TAG")
    var tail = [UInt8](repeating: 0, count: 16)
    var tailLength: Int32 = 0
    guard EVP_DecryptFinal_ex(context.pointer, &tail, &tailLength) == 1 else {
      // Wipe what was decrypted: unauthenticated plaintext must never escape.
      for index in plaintext.indices { plaintext[index] = 0 }
      throw CryptoError.openSSL(.authenticationFailure, "AES256GCM.open")
    }
    return plaintext
  }

  private static func validate(key: [UInt8], iv: [UInt8], operation: String) throws(CryptoError) {
    guard key.count == keySize else {
      throw CryptoError(code: .invalidParameter, operation: "\(operation): key must be 32 bytes")
    }
    guard iv.count == ivSize else {
      throw CryptoError(code: .invalidParameter, operation: "\(operation): IV must be 12 bytes")
    }
  }

  private static func makeContext() throws(CryptoError) -> OpenSSLObject {
    try OpenSSLObject(EVP_CIPHER_CTX_new(), operation: "EVP_CIPHER_CTX_new") { EVP_CIPHER_CTX_free($0) }
  }

  private static func feed(_ context: OpenSSLObject, additionalData: [UInt8], encrypting: Bool)
    throws(CryptoError)
  {
    guard !additionalData.isEmpty else { return }
    var ignored: Int32 = 0
    let result =
      encrypting
      ? EVP_EncryptUpdate(context.pointer, nil, &ignored, additionalData, Int32(additionalData.count))
      : EVP_DecryptUpdate(context.pointer, nil, &ignored, additionalData, Int32(additionalData.count))
    try check(result, "AES256GCM additional data")
  }
}

/// Comparisons of secrets whose running time does not depend on where they differ.
public enum ConstantTime {
  /// `CRYPTO_memcmp` over equal-length inputs; different lengths compare unequal immediately (lengths
  /// of MACs and tags are public).
  public static func equals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    guard !a.isEmpty else { return true }
    return a.withUnsafeBytes { left in
      b.withUnsafeBytes { right in CRYPTO_memcmp(left.baseAddress, right.baseAddress, left.count) == 0 }
    }
  }
}
