import CoveCrypto
import Testing

@Suite("AES-256-GCM")
struct AESGCMTests {
  struct Vector: Sendable, CustomTestStringConvertible {
    var name: String
    var key: [UInt8]
    var iv: [UInt8]
    var plaintext: [UInt8]
    var aad: [UInt8]
    var ciphertext: [UInt8]
    var tag: [UInt8]
    var testDescription: String { name }
  }

  static let key15 = hex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
  static let iv15 = hex("cafebabefacedbaddecaf888")
  static let plaintext15 = hex(
    """
    d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
    1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255
    """)
  static let ciphertext15 = hex(
    """
    522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
    8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad
    """)

  // McGrew & Viega, "The Galois/Counter Mode of Operation (GCM)", test cases 13-16 (AES-256), the
  // vectors NIST SP 800-38D's validation material is based on.
  static let vectors: [Vector] = [
    Vector(
      name: "GCM test case 13", key: [UInt8](repeating: 0, count: 32), iv: [UInt8](repeating: 0, count: 12),
      plaintext: [], aad: [], ciphertext: [], tag: hex("530f8afbc74536b9a963b4f1c4cb738b")),
    Vector(
      name: "GCM test case 14", key: [UInt8](repeating: 0, count: 32), iv: [UInt8](repeating: 0, count: 12),
      plaintext: [UInt8](repeating: 0, count: 16), aad: [],
      ciphertext: hex("cea7403d4d606b6e074ec5d3baf39d18"), tag: hex("d0d1c8a799996bf0265b98b5d48ab919")),
    Vector(
      name: "GCM test case 15", key: key15, iv: iv15, plaintext: plaintext15, aad: [],
      ciphertext: ciphertext15, tag: hex("b094dac5d93471bdec1a502270e3cc6c")),
    Vector(
      name: "GCM test case 16", key: key15, iv: iv15, plaintext: Array(plaintext15.prefix(60)),
      aad: hex("feedfacedeadbeeffeedfacedeadbeefabaddad2"), ciphertext: Array(ciphertext15.prefix(60)),
      tag: hex("76fc6ece0f4e1768cddf8853bb2d551b")),
  ]

  @Test(arguments: vectors)
  func sealAndOpen(_ vector: Vector) throws {
    let sealed = try AES256GCM.seal(
      key: vector.key, iv: vector.iv, plaintext: vector.plaintext, additionalData: vector.aad)
    #expect(sealed.ciphertext == vector.ciphertext)
    #expect(sealed.tag == vector.tag)
    let opened = try AES256GCM.open(
      key: vector.key, iv: vector.iv, ciphertext: vector.ciphertext, tag: vector.tag,
      additionalData: vector.aad)
    #expect(opened == vector.plaintext)
  }

  @Test func tamperingIsDetected() throws {
    let vector = Self.vectors[3]
    func expectAuthenticationFailure(ciphertext: [UInt8], tag: [UInt8], aad: [UInt8]) {
      let error = #expect(throws: CryptoError.self) {
        try AES256GCM.open(
          key: vector.key, iv: vector.iv, ciphertext: ciphertext, tag: tag, additionalData: aad)
      }
      #expect(error?.code == .authenticationFailure)
    }
    var ciphertext = vector.ciphertext
    ciphertext[5] ^= 0x01
    expectAuthenticationFailure(ciphertext: ciphertext, tag: vector.tag, aad: vector.aad)
    var tag = vector.tag
    tag[15] ^= 0x80
    expectAuthenticationFailure(ciphertext: vector.ciphertext, tag: tag, aad: vector.aad)
    var aad = vector.aad
    aad[0] ^= 0x01
    expectAuthenticationFailure(ciphertext: vector.ciphertext, tag: vector.tag, aad: aad)
    expectAuthenticationFailure(ciphertext: vector.ciphertext, tag: vector.tag, aad: [])
  }

  @Test func badSizesAreInvalidParameters() {
    let short = #expect(throws: CryptoError.self) {
      try AES256GCM.seal(
        key: [UInt8](repeating: 0, count: 16), iv: [UInt8](repeating: 0, count: 12), plaintext: [],
        additionalData: [])
    }
    #expect(short?.code == .invalidParameter)
    let badIV = #expect(throws: CryptoError.self) {
      try AES256GCM.seal(
        key: [UInt8](repeating: 0, count: 32), iv: [UInt8](repeating: 0, count: 8), plaintext: [],
        additionalData: [])
    }
    #expect(badIV?.code == .invalidParameter)
    let badTag = #expect(throws: CryptoError.self) {
      try AES256GCM.open(
        key: [UInt8](repeating: 0, count: 32), iv: [UInt8](repeating: 0, count: 12), ciphertext: [], tag: [1],
        additionalData: [])
    }
    #expect(badTag?.code == .invalidParameter)
  }
}
