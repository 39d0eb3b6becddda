import CoveCrypto
import Testing

@Suite("Hashes, HMAC, HKDF")
struct HashTests {
  // FIPS 180-2 Appendix B.1 / D.1: the one-block message "abc".
  @Test func sha256OfABC() {
    #expect(
      HashAlgorithm.sha256.hash(Array("abc".utf8))
        == hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"))
  }

  @Test func sha384OfABC() {
    #expect(
      HashAlgorithm.sha384.hash(Array("abc".utf8))
        == hex(
          "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7"))
  }

  @Test func digestSizes() {
    #expect(HashAlgorithm.sha256.digestSize == 32)
    #expect(HashAlgorithm.sha384.digestSize == 48)
    #expect(HashAlgorithm.sha256.hash([]).count == 32)
  }

  @Test(arguments: [HashAlgorithm.sha256, .sha384])
  func incrementalEqualsOneShot(_ algorithm: HashAlgorithm) {
    let message = (0..<1000).map { UInt8(truncatingIfNeeded: $0 * 7) }
    var running = IncrementalHash(algorithm)
    #expect(running.algorithm == algorithm)
    running.update(Array(message[..<10]))
    running.update(message[10..<500])
    running.update([])
    running.update(Array(message[500...]))
    #expect(running.finalize() == algorithm.hash(message))
  }

  @Test func finalizeIsNonDestructive() {
    var running = IncrementalHash(.sha256)
    running.update(Array("ab".utf8))
    #expect(running.finalize() == HashAlgorithm.sha256.hash(Array("ab".utf8)))
    #expect(running.finalize() == HashAlgorithm.sha256.hash(Array("ab".utf8)))
    running.update(Array("c".utf8))
    #expect(running.finalize() == hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"))
  }

  @Test func copiesAreIndependent() {
    var original = IncrementalHash(.sha384)
    original.update(Array("a".utf8))
    var copy = original
    copy.update(Array("bc".utf8))
    original.update(Array("xyz".utf8))
    #expect(copy.finalize() == HashAlgorithm.sha384.hash(Array("abc".utf8)))
    #expect(original.finalize() == HashAlgorithm.sha384.hash(Array("axyz".utf8)))
    let untouched = copy
    copy.update([1])
    #expect(untouched.finalize() == HashAlgorithm.sha384.hash(Array("abc".utf8)))
  }

  // RFC 4231 §4.3, test case 2 (key "Jefe").
  @Test func hmacRFC4231Case2() {
    let key = Array("Jefe".utf8)
    let data = Array("what do ya want for nothing?".utf8)
    #expect(
      HMAC.authenticate(.sha256, key: key, data: data)
        == hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"))
    #expect(
      HMAC.authenticate(.sha384, key: key, data: data)
        == hex(
          "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649"))
  }

  @Test func hmacEmptyKeyAndData() {
    // HMAC-SHA256("", ""), the well-known value.
    #expect(
      HMAC.authenticate(.sha256, key: [], data: [])
        == hex("b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad"))
  }

  struct HKDFVector: Sendable, CustomTestStringConvertible {
    var name: String
    var algorithm: HashAlgorithm
    var ikm: [UInt8]
    var salt: [UInt8]
    var info: [UInt8]
    var prk: [UInt8]
    var okm: [UInt8]
    var testDescription: String { name }
  }

  static let hkdfVectors: [HKDFVector] = [
    // RFC 5869 Appendix A.1.
    HKDFVector(
      name: "RFC 5869 A.1", algorithm: .sha256, ikm: [UInt8](repeating: 0x0b, count: 22),
      salt: Array(0x00...0x0c), info: Array(0xf0...0xf9),
      prk: hex("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"),
      okm: hex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")),
    // RFC 5869 Appendix A.2 (long inputs).
    HKDFVector(
      name: "RFC 5869 A.2", algorithm: .sha256, ikm: Array(0x00...0x4f), salt: Array(0x60...0xaf),
      info: Array(0xb0...0xff),
      prk: hex("06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244"),
      okm: hex(
        """
        b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09\
        da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87
        """)),
    // RFC 5869 Appendix A.3 (empty salt and info).
    HKDFVector(
      name: "RFC 5869 A.3", algorithm: .sha256, ikm: [UInt8](repeating: 0x0b, count: 22), salt: [],
      info: [],
      prk: hex("19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04"),
      okm: hex("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8")),
    // SHA-384, produced with Python `cryptography` 48:
    //   HKDF(hashes.SHA384(), 64, salt=bytes(range(48)), info=b"\x30\x00spdm1.2 derived")
    //     .derive(b"Cove SPDM shared secret")
    // and PRK = hmac.new(salt, ikm, hashlib.sha384).digest(); HKDFExpand on PRK gave the same OKM.
    HKDFVector(
      name: "SHA-384 (Python cryptography)", algorithm: .sha384, ikm: Array("Cove SPDM shared secret".utf8),
      salt: Array(0..<48), info: [0x30, 0x00] + Array("spdm1.2 derived".utf8),
      prk: hex(
        "95d09b15277e5f6bbc276294b515107124aeeaf60fa8a5360b36995500e0f1c33d1e8e76b9b101583aa6a033c46399d4"),
      okm: hex(
        """
        28f79d70e33574676358097cab27bb0ca1de5b9c79c24df5916dc9981666fd18c44a517bb1fc70ef832a7734f4bee92a\
        75cc90fdcd9c3667cc23d73c221b7f1e
        """)),
  ]

  @Test(arguments: hkdfVectors)
  func hkdfVector(_ vector: HKDFVector) throws {
    let prk = HKDF.extract(vector.algorithm, salt: vector.salt, inputKeyMaterial: vector.ikm)
    #expect(prk == vector.prk)
    let okm = try HKDF.expand(
      vector.algorithm, pseudoRandomKey: prk, info: vector.info, outputLength: vector.okm.count)
    #expect(okm == vector.okm)
  }

  @Test func hkdfExpandLengthLimits() throws {
    let prk = [UInt8](repeating: 1, count: 32)
    #expect(try HKDF.expand(.sha256, pseudoRandomKey: prk, info: [], outputLength: 0) == [])
    #expect(
      try HKDF.expand(.sha256, pseudoRandomKey: prk, info: [], outputLength: 255 * 32).count == 255 * 32)
    let error = #expect(throws: CryptoError.self) {
      try HKDF.expand(.sha256, pseudoRandomKey: prk, info: [], outputLength: 255 * 32 + 1)
    }
    #expect(error?.code == .invalidParameter)
  }

  @Test func constantTimeEquals() {
    #expect(ConstantTime.equals([1, 2, 3], [1, 2, 3]))
    #expect(!ConstantTime.equals([1, 2, 3], [1, 2, 4]))
    #expect(!ConstantTime.equals([1, 2, 3], [1, 2]))
    #expect(ConstantTime.equals([], []))
  }

  @Test func seededEntropyIsDeterministicAndDocumentedStream() {
    let a = SeededEntropy(seed: 42)
    let b = SeededEntropy(seed: 42)
    let first = a.bytes(count: 10) + a.bytes(count: 40)
    #expect(first == b.bytes(count: 50))
    // Block 0 = SHA-256(seed LE ‖ counter 0 LE), block 1 = counter 1.
    let seed: [UInt8] = [42, 0, 0, 0, 0, 0, 0, 0]
    let expected =
      HashAlgorithm.sha256.hash(seed + [0, 0, 0, 0, 0, 0, 0, 0])
      + HashAlgorithm.sha256.hash(seed + [1, 0, 0, 0, 0, 0, 0, 0])
    #expect(first == Array(expected.prefix(50)))
    #expect(SeededEntropy(seed: 43).bytes(count: 50) != first)
    #expect(SecureRandom.bytes(32).count == 32)
    #expect(SystemEntropy().bytes(count: 16) != SystemEntropy().bytes(count: 16))
  }
}
