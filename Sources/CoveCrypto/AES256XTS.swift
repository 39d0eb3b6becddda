internal import COpenSSL

/// XTS-AES-256 (IEEE Std 1619-2018, NIST SP 800-38E): the tweakable block-cipher mode memory
/// encryption engines use (Intel MKTME/TDX, AMD SEV), with the physical address as the tweak, so the
/// same plaintext encrypts differently at every address and a ciphertext moved elsewhere decrypts to
/// garbage.
///
/// The key is 64 bytes: Key1 (the data key) followed by Key2 (the tweak key), each 256 bits
/// (IEEE 1619-2018 §5.1). The two halves must differ: OpenSSL refuses equal halves when encrypting
/// (the "duplicated keys" check SP 800-38E recommends), and so does this type, for both directions.
///
/// One call encrypts one data unit: the whole buffer, at least one 16-byte block and at most 2^20
/// blocks (IEEE 1619-2018 §5.1), with ciphertext stealing for a partial last block (§5.3.2). The
/// tweak is the 16-byte value IEEE 1619 encrypts with Key2; for a data-unit sequence number it is
/// the number in little-endian (`tweak(dataUnit:)`).
///
/// Every call sets up a fresh `EVP_CIPHER_CTX` and frees it, so the type holds no C state and is
/// `Sendable`.
public struct AES256XTS: Sendable {
  public static let keySize = 64
  public static let tweakSize = 16
  /// One AES block: XTS needs at least one full block per data unit (IEEE 1619-2018 §5.3.1).
  public static let minimumDataSize = 16
  /// 2^20 blocks of 16 bytes (IEEE 1619-2018 §5.1: "the number of 128-bit blocks in the data unit
  /// shall not exceed 2^20"); OpenSSL enforces the same cap.
  public static let maximumDataSize = (1 << 20) * 16

  private let key: [UInt8]

  /// Throws `.invalidParameter` unless `key` is 64 bytes, and `.invalidKey` when its two 256-bit
  /// halves are equal (XTS with Key1 = Key2 loses its security argument; OpenSSL rejects it).
  public init(key: [UInt8]) throws(CryptoError) {
    guard key.count == Self.keySize else {
      throw CryptoError(code: .invalidParameter, operation: "AES256XTS: key must be 64 bytes")
    }
    guard !ConstantTime.equals(Array(key[0..<32]), Array(key[32..<64])) else {
      throw CryptoError(code: .invalidKey, operation: "AES256XTS: the two key halves are equal")
    }
    self.key = key
  }

  /// The tweak for data-unit sequence number `dataUnit`: the number as 16 little-endian bytes
  /// (IEEE 1619-2018 §5.1; the Annex B vectors number their data units this way). Memory encryption
  /// uses the physical address of the data unit.
  public static func tweak(dataUnit: UInt64) -> [UInt8] {
    var tweak = [UInt8](repeating: 0, count: tweakSize)
    for index in 0..<8 { tweak[index] = UInt8(truncatingIfNeeded: dataUnit >> (8 * UInt64(index))) }
    return tweak
  }

  /// XTS-AES encryption of one data unit (IEEE 1619-2018 §5.3.2).
  public func encrypt(_ data: [UInt8], tweak: [UInt8]) throws(CryptoError) -> [UInt8] {
    try transformed(data, tweak: tweak, encrypting: true)
  }

  /// XTS-AES decryption of one data unit (IEEE 1619-2018 §5.4.2). XTS has no integrity: any
  /// ciphertext decrypts, wrong or tampered ones to garbage.
  public func decrypt(_ data: [UInt8], tweak: [UInt8]) throws(CryptoError) -> [UInt8] {
    try transformed(data, tweak: tweak, encrypting: false)
  }

  /// Encrypts `source` into `destination` without intermediate arrays. The buffers must have the
  /// same size; they may be the same memory (in place) but must not otherwise overlap.
  public func encrypt(
    _ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer, tweak: [UInt8]
  ) throws(CryptoError) {
    try transform(source, into: destination, tweak: tweak, encrypting: true)
  }

  /// Decrypts `source` into `destination`; same buffer rules as `encrypt(_:into:tweak:)`.
  public func decrypt(
    _ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer, tweak: [UInt8]
  ) throws(CryptoError) {
    try transform(source, into: destination, tweak: tweak, encrypting: false)
  }

  /// Encrypts `buffer` in place.
  public func encrypt(inPlace buffer: UnsafeMutableRawBufferPointer, tweak: [UInt8]) throws(CryptoError) {
    try transform(UnsafeRawBufferPointer(buffer), into: buffer, tweak: tweak, encrypting: true)
  }

  /// Decrypts `buffer` in place.
  public func decrypt(inPlace buffer: UnsafeMutableRawBufferPointer, tweak: [UInt8]) throws(CryptoError) {
    try transform(UnsafeRawBufferPointer(buffer), into: buffer, tweak: tweak, encrypting: false)
  }

  private func transformed(_ data: [UInt8], tweak: [UInt8], encrypting: Bool) throws(CryptoError)
    -> [UInt8]
  {
    // Validate before allocating, so a hostile length never sizes an allocation.
    try validate(count: data.count, tweak: tweak, encrypting: encrypting)
    var output = [UInt8](repeating: 0, count: data.count)
    var failure: CryptoError?
    data.withUnsafeBytes { source in
      output.withUnsafeMutableBytes { destination in
        do throws(CryptoError) {
          try transform(source, into: destination, tweak: tweak, encrypting: encrypting)
        } catch {
          failure = error
        }
      }
    }
    if let failure { throw failure }
    return output
  }

  private func validate(count: Int, tweak: [UInt8], encrypting: Bool) throws(CryptoError) {
    let operation = encrypting ? "AES256XTS.encrypt" : "AES256XTS.decrypt"
    guard tweak.count == Self.tweakSize else {
      throw CryptoError(code: .invalidParameter, operation: "\(operation): tweak must be 16 bytes")
    }
    guard count >= Self.minimumDataSize else {
      throw CryptoError(code: .invalidParameter, operation: "\(operation): data unit shorter than 16 bytes")
    }
    guard count <= Self.maximumDataSize else {
      throw CryptoError(code: .invalidParameter, operation: "\(operation): data unit longer than 2^20 blocks")
    }
  }

  private func transform(
    _ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer, tweak: [UInt8],
    encrypting: Bool
  ) throws(CryptoError) {
    try validate(count: source.count, tweak: tweak, encrypting: encrypting)
    let operation = encrypting ? "AES256XTS.encrypt" : "AES256XTS.decrypt"
    guard destination.count == source.count else {
      throw CryptoError(
        code: .invalidParameter, operation: "\(operation): destination size differs from the source")
    }
    let context = try OpenSSLObject(EVP_CIPHER_CTX_new(), operation: "EVP_CIPHER_CTX_new") {
      EVP_CIPHER_CTX_free($0)
    }
    try check(
      EVP_CipherInit_ex(context.pointer, EVP_aes_256_xts(), nil, key, tweak, encrypting ? 1 : 0),
      "EVP_CipherInit_ex(aes-256-xts)", .invalidKey)
    let input = source.baseAddress!.assumingMemoryBound(to: UInt8.self)
    let output = destination.baseAddress!.assumingMemoryBound(to: UInt8.self)
    var written: Int32 = 0
    // XTS processes the data unit in one call: a second update would start a new data unit.
    try check(
      EVP_CipherUpdate(context.pointer, output, &written, input, Int32(source.count)), "EVP_CipherUpdate")
    guard Int(written) == source.count else {
      throw CryptoError.openSSL(.internalFailure, "\(operation): OpenSSL wrote \(written) bytes")
    }
    var tailLength: Int32 = 0
    try check(EVP_CipherFinal_ex(context.pointer, output + Int(written), &tailLength), "EVP_CipherFinal_ex")
  }
}
