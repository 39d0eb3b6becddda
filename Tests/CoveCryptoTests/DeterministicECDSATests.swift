import Foundation
import Testing

@testable import CoveCrypto

/// RFC 6979 deterministic ECDSA: `ECPrivateKey.signature(forDigest:)` derives k from the key and the
/// digest, so the same seed gives the same SPDM signatures (and the same traces) on every run.
@Suite("Deterministic ECDSA (RFC 6979)")
struct DeterministicECDSATests {
  /// The hash that made the digest. SHA-512 is not a `HashAlgorithm` (SPDM does not use it); its
  /// digests come from the `openssl` CLI, to exercise a digest longer than both curves' orders.
  enum MessageHash: Sendable, CustomStringConvertible {
    case sha256, sha384, sha512

    func digest(_ message: String) throws -> [UInt8] {
      switch self {
      case .sha256: return HashAlgorithm.sha256.hash(Array(message.utf8))
      case .sha384: return HashAlgorithm.sha384.hash(Array(message.utf8))
      case .sha512:
        let result = try run("openssl", ["dgst", "-sha512", "-binary"], input: Array(message.utf8))
        #expect(result.status == 0, "\(result.errorText)")
        return result.output
      }
    }

    var description: String {
      switch self {
      case .sha256: "SHA-256"
      case .sha384: "SHA-384"
      case .sha512: "SHA-512"
      }
    }
  }

  struct Vector: Sendable, CustomStringConvertible {
    var curve: EllipticCurve
    var hash: MessageHash
    var message: String
    var k: String
    var r: String
    var s: String
    var description: String { "\(curve) \(hash) \"\(message)\"" }
  }

  // RFC 6979 Appendix A.2.5 (P-256) and A.2.6 (P-384): the key pairs.
  static let p256X = "C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721"
  static let p256U =
    "60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6"
    + "7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299"
  static let p384X =
    "6B9D3DAD2E1B8C1C05B19875B6659F4DE23C3B667BF297BA9AA47740787137D896D5724E4C70A825F872C9EA60D2EDF5"
  static let p384U =
    "EC3A4E415B4E19A4568618029F427FA5DA9A8BC4AE92E02E06AAE5286B300C64DEF8F0EA9055866064A254515480BC13"
    + "8015D9B72D7D57244EA8EF9AC0C621896708A59367F9DFB9F54CA84B3F1C9DB1288B231C3AE0D4FE7344FD2533264720"

  /// The signatures of A.2.5 / A.2.6 Cove's curve–hash pairs use (P-256 with SHA-256, P-384 with
  /// SHA-384), plus pairs whose digest is longer (hlen > qlen: P-256 with SHA-384 and SHA-512, P-384
  /// with SHA-512) or shorter (hlen < qlen: P-384 with SHA-256) than the order, which exercise the
  /// truncation in bits2int / bits2octets.
  static let vectors: [Vector] = [
    Vector(
      curve: .p256, hash: .sha256, message: "sample",
      k: "A6E3C57DD01ABE90086538398355DD4C3B17AA873382B0F24D6129493D8AAD60",
      r: "EFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716",
      s: "F7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8"),
    Vector(
      curve: .p256, hash: .sha256, message: "test",
      k: "D16B6AE827F17175E040871A1C7EC3500192C4C92677336EC2537ACAEE0008E0",
      r: "F1ABB023518351CD71D881567B1EA663ED3EFCF6C5132B354F28D3B0B7D38367",
      s: "019F4113742A2B14BD25926B49C649155F267E60D3814B4C0CC84250E46F0083"),
    Vector(
      curve: .p256, hash: .sha384, message: "sample",
      k: "09F634B188CEFD98E7EC88B1AA9852D734D0BC272F7D2A47DECC6EBEB375AAD4",
      r: "0EAFEA039B20E9B42309FB1D89E213057CBF973DC0CFC8F129EDDDC800EF7719",
      s: "4861F0491E6998B9455193E34E7B0D284DDD7149A74B95B9261F13ABDE940954"),
    Vector(
      curve: .p256, hash: .sha512, message: "sample",
      k: "5FA81C63109BADB88C1F367B47DA606DA28CAD69AA22C4FE6AD7DF73A7173AA5",
      r: "8496A60B5E9B47C825488827E0495B0E3FA109EC4568FD3F8D1097678EB97F00",
      s: "2362AB1ADBE2B8ADF9CB9EDAB740EA6049C028114F2460F96554F61FAE3302FE"),
    Vector(
      curve: .p384, hash: .sha384, message: "sample",
      k: "94ED910D1A099DAD3254E9242AE85ABDE4BA15168EAF0CA87A555FD56D10FBCA2907E3E83BA95368623B8C4686915CF9",
      r: "94EDBB92A5ECB8AAD4736E56C691916B3F88140666CE9FA73D64C4EA95AD133C81A648152E44ACF96E36DD1E80FABE46",
      s: "99EF4AEB15F178CEA1FE40DB2603138F130E740A19624526203B6351D0A3A94FA329C145786E679E7B82C71A38628AC8"),
    Vector(
      curve: .p384, hash: .sha384, message: "test",
      k: "015EE46A5BF88773ED9123A5AB0807962D193719503C527B031B4C2D225092ADA71F4A459BC0DA98ADB95837DB8312EA",
      r: "8203B63D3C853E8D77227FB377BCF7B7B772E97892A80F36AB775D509D7A5FEB0542A7F0812998DA8F1DD3CA3CF023DB",
      s: "DDD0760448D42D8A43AF45AF836FCE4DE8BE06B485E9B61B827C2F13173923E06A739F040649A667BF3B828246BAA5A5"),
    Vector(
      curve: .p384, hash: .sha256, message: "sample",
      k: "180AE9F9AEC5438A44BC159A1FCB277C7BE54FA20E7CF404B490650A8ACC414E375572342863C899F9F2EDF9747A9B60",
      r: "21B13D1E013C7FA1392D03C5F99AF8B30C570C6F98D4EA8E354B63A21D3DAA33BDE1E888E63355D92FA2B3C36D8FB2CD",
      s: "F3AA443FB107745BF4BD77CB3891674632068A10CA67E3D45DB2266FA7D1FEEBEFDC63ECCD1AC42EC0CB8668A4FA0AB0"),
    Vector(
      curve: .p384, hash: .sha256, message: "test",
      k: "0CFAC37587532347DC3389FDC98286BBA8C73807285B184C83E62E26C401C0FAA48DD070BA79921A3457ABFF2D630AD7",
      r: "6D6DEFAC9AB64DABAFE36C6BF510352A4CC27001263638E5B16D9BB51D451559F918EEDAF2293BE5B475CC8F0188636B",
      s: "2D46F3BECBCC523D5F1A1256BF0C9B024D879BA9E838144C8BA6BAEB4B53B47D51AB373F9845C0514EEFB14024787265"),
    Vector(
      curve: .p384, hash: .sha512, message: "test",
      k: "3780C4F67CB15518B6ACAE34C9F83568D2E12E47DEAB6C50A4E4EE5319D1E8CE0E2CC8A136036DC4B9C00E6888F66B6C",
      r: "A0D5D090C9980FAF3C2CE57B7AE951D31977DD11C775D314AF55F76C676447D06FB6495CD21B4B6E340FC236584FB277",
      s: "976984E59B4C77B0E8E4460DCA3D9F20E07B9BB1F63BEEFAF576F6B2E8B224634A2092CD3792E0159AD9CEE37659C736"),
  ]

  static func rfcKey(_ curve: EllipticCurve) throws -> ECPrivateKey {
    try ECPrivateKey(curve: curve, scalar: hex(curve == .p256 ? p256X : p384X))
  }

  @Test func rfcKeyPairs() throws {
    #expect(try Self.rfcKey(.p256).publicKey.rawXY == hex(Self.p256U))
    #expect(try Self.rfcKey(.p384).publicKey.rawXY == hex(Self.p384U))
  }

  @Test(arguments: vectors)
  func rfcVector(_ vector: Vector) throws {
    let key = try Self.rfcKey(vector.curve)
    let digest = try vector.hash.digest(vector.message)
    #expect(try key.deterministicNonce(forDigest: digest) == hex(vector.k))
    let signature = try key.signature(forDigest: digest)
    #expect(hexString(signature) == hexString(hex(vector.r + vector.s)))
    #expect(key.publicKey.isValidSignature(signature, forDigest: digest))
  }

  /// The RFC's signatures, from Cove, verified by the `openssl` CLI.
  @Test(arguments: [EllipticCurve.p256, .p384])
  func openSSLCLIVerifiesRFCSignatures(_ curve: EllipticCurve) throws {
    let hash: HashAlgorithm = curve == .p256 ? .sha256 : .sha384
    let directory = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    let key = try Self.rfcKey(curve)
    let message = Array("sample".utf8)
    try write(message, to: directory.appendingPathComponent("msg"))
    try write(key.publicKey.pemRepresentation, to: directory.appendingPathComponent("pub.pem"))
    let signature = try key.signature(for: message, hash: hash)
    try write(
      try ECDSASignatureEncoding.der(fromRaw: signature), to: directory.appendingPathComponent("sig.der"))
    let verified = try run(
      "openssl",
      ["dgst", curve == .p256 ? "-sha256" : "-sha384", "-verify", "pub.pem", "-signature", "sig.der", "msg"],
      in: directory)
    #expect(verified.status == 0, "\(verified.errorText)")
  }

  @Test(arguments: [EllipticCurve.p256, .p384])
  func sameKeyAndDigestSignIdentically(_ curve: EllipticCurve) throws {
    let hash: HashAlgorithm = curve == .p256 ? .sha256 : .sha384
    let key = try ECPrivateKey(curve: curve, entropy: SeededEntropy(seed: 6979))
    let digest = hash.hash(Array("CHALLENGE_AUTH transcript".utf8))
    let first = try key.signature(forDigest: digest)
    #expect(try key.signature(forDigest: digest) == first)
    // The same seed in another run builds the same key, hence the same signature.
    let again = try ECPrivateKey(curve: curve, entropy: SeededEntropy(seed: 6979))
    #expect(try again.signature(forDigest: digest) == first)
    // A different digest or key gives a different signature (and a different k).
    let otherDigest = hash.hash(Array("MEASUREMENTS transcript".utf8))
    #expect(try key.signature(forDigest: otherDigest) != first)
    #expect(try key.deterministicNonce(forDigest: otherDigest) != key.deterministicNonce(forDigest: digest))
    let otherKey = try ECPrivateKey(curve: curve, entropy: SeededEntropy(seed: 6980))
    #expect(try otherKey.signature(forDigest: digest) != first)
    #expect(key.publicKey.isValidSignature(first, forDigest: digest))
  }

  /// `ECPrivateKey` is `Sendable`: one key signing from many tasks at once gives the same signature
  /// everywhere (each signature owns its OpenSSL objects; the key is only read).
  @Test func concurrentSigningAgrees() async throws {
    let key = try ECPrivateKey(curve: .p384, entropy: SeededEntropy(seed: 42))
    let digest = HashAlgorithm.sha384.hash(Array("concurrent".utf8))
    let expected = try key.signature(forDigest: digest)
    let results = try await withThrowingTaskGroup(of: [UInt8].self) { group in
      for _ in 0..<32 {
        group.addTask { try key.signature(forDigest: digest) }
      }
      var all: [[UInt8]] = []
      for try await signature in group { all.append(signature) }
      return all
    }
    #expect(results.count == 32)
    #expect(results.allSatisfy { $0 == expected })
  }

  /// Digests of lengths no SHA-1/SHA-2 function has still sign deterministically (the DRBG then uses
  /// the curve's hash) and verify; OpenSSL truncates or pads them as ECDSA specifies.
  @Test(arguments: [EllipticCurve.p256, .p384])
  func unusualDigestLengths(_ curve: EllipticCurve) throws {
    let key = try ECPrivateKey(curve: curve, entropy: SeededEntropy(seed: 1))
    for length in [1, 17, 40, 100] {
      let digest = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
      let signature = try key.signature(forDigest: digest)
      #expect(signature.count == 2 * curve.coordinateSize)
      #expect(try key.signature(forDigest: digest) == signature)
      #expect(key.publicKey.isValidSignature(signature, forDigest: digest), "length \(length)")
    }
    let empty = #expect(throws: CryptoError.self) { try key.signature(forDigest: []) }
    #expect(empty?.code == .invalidParameter)
  }

  /// Step h.3 (a k that is out of range or gives r = 0 or s = 0 is followed by K = HMAC_K(V ‖ 0x00),
  /// V = HMAC_K(V) and a fresh T) cannot be reached through the RFC's vectors, so the DRBG's first
  /// candidates are compared with a from-the-RFC Python HMAC_DRBG (`hmac`, `hashlib` and Python
  /// integers only).
  @Test(arguments: [EllipticCurve.p256, .p384])
  func successiveNoncesFollowStepH3(_ curve: EllipticCurve) throws {
    // The group orders n (SEC 2 §2.4.2, §2.5.2).
    let order =
      curve == .p256
      ? "FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551"
      : "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973"
    let script = #"""
      import hashlib, hmac, sys
      q_hex, x_hex, h_hex, name, count = sys.stdin.read().split()
      q = int(q_hex, 16); qlen = q.bit_length(); rolen = (qlen + 7) // 8
      def bits2int(b):
          v = int.from_bytes(b, "big"); blen = len(b) * 8
          return v >> (blen - qlen) if blen > qlen else v
      def mac(k, d): return hmac.new(k, d, name).digest()
      x = int(x_hex, 16).to_bytes(rolen, "big")
      h = (bits2int(bytes.fromhex(h_hex)) % q).to_bytes(rolen, "big")
      hlen = hashlib.new(name).digest_size
      V = b"\x01" * hlen; K = b"\x00" * hlen
      K = mac(K, V + b"\x00" + x + h); V = mac(K, V)
      K = mac(K, V + b"\x01" + x + h); V = mac(K, V)
      out = []
      while len(out) < int(count):
          T = b""
          while len(T) * 8 < qlen:
              V = mac(K, V); T += V
          k = bits2int(T)
          if 1 <= k < q: out.append(k.to_bytes(rolen, "big").hex())
          K = mac(K, V + b"\x00"); V = mac(K, V)
      print("\n".join(out))
      """#
    let keys = [try Self.rfcKey(curve), try ECPrivateKey(curve: curve, entropy: SeededEntropy(seed: 7))]
    for key in keys {
      for (hash, name) in [(HashAlgorithm.sha256, "sha256"), (.sha384, "sha384")] {
        let digest = hash.hash(Array("sample".utf8))
        var nonces = try RFC6979Nonces(
          group: try curve.makeGroup(), context: try makeBigNumberContext(),
          privateKey: try makeBigNumber(key.scalar), digest: digest,
          hash: RFC6979Hash(digestLength: digest.count, curve: curve))
        var swift: [String] = []
        for _ in 0..<3 {
          let k = try nonces.next()  // the owner must outlive the use of k.pointer
          swift.append(hexString(bigEndianBytes(of: k.pointer, width: curve.coordinateSize)!))
        }
        let input = "\(order) \(hexString(key.scalar)) \(hexString(digest)) \(name) 3"
        let result = try run("python3", ["-c", script], input: Array(input.utf8))
        #expect(result.status == 0, "\(result.errorText)")
        let python = String(decoding: result.output, as: UTF8.self).split(separator: "\n").map(String.init)
        #expect(swift == python, "\(curve) \(hash)")
        #expect(swift[0] == hexString(try key.deterministicNonce(forDigest: digest)))
      }
    }
  }

  /// An independent RFC 6979 implementation: Python `cryptography` (≥ 43, on OpenSSL ≥ 3.2) signs
  /// with `deterministic_signing=True`; for fresh random keys its (r, s) must equal Cove's exactly.
  @Test func matchesPythonCryptography() throws {
    struct Case {
      var curve: EllipticCurve
      var hash: HashAlgorithm
      var key: ECPrivateKey
      var digest: [UInt8]
    }
    var cases: [Case] = []
    for (curve, hashes) in [
      (EllipticCurve.p256, [HashAlgorithm.sha256, .sha384]), (.p384, [.sha384, .sha256]),
    ] {
      for index in 0..<4 {
        let key = try ECPrivateKey(curve: curve, entropy: SystemEntropy())
        for hash in hashes {
          cases.append(
            Case(curve: curve, hash: hash, key: key, digest: hash.hash(Array("message \(index)".utf8))))
        }
      }
    }
    let script = """
      import sys
      from cryptography.hazmat.primitives import hashes
      from cryptography.hazmat.primitives.asymmetric import ec, utils
      curves = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1()}
      algs = {"SHA-256": hashes.SHA256(), "SHA-384": hashes.SHA384()}
      size = {"P-256": 32, "P-384": 48}
      for line in sys.stdin.read().split():
          curve, alg, d, digest = line.split(",")
          key = ec.derive_private_key(int(d, 16), curves[curve])
          der = key.sign(bytes.fromhex(digest),
                         ec.ECDSA(utils.Prehashed(algs[alg]), deterministic_signing=True))
          r, s = utils.decode_dss_signature(der)
          print((r.to_bytes(size[curve], "big") + s.to_bytes(size[curve], "big")).hex())
      """
    let input = cases.map {
      "\($0.curve),\($0.hash),\(hexString($0.key.scalar)),\(hexString($0.digest))"
    }.joined(separator: "\n")
    let result = try run("python3", ["-c", script], input: Array(input.utf8))
    #expect(result.status == 0, "\(result.errorText)")
    let expected = String(decoding: result.output, as: UTF8.self).split(separator: "\n").map(String.init)
    #expect(expected.count == cases.count)
    for (item, python) in zip(cases, expected) {
      #expect(
        hexString(try item.key.signature(forDigest: item.digest)) == python, "\(item.curve) \(item.hash)")
    }
  }
}
