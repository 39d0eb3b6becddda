internal import COpenSSL

/// Where key generation and protocol nonces get their randomness. Injected (architecture rule 6) so
/// state machines and key generation are deterministic under test with `SeededEntropy`.
public protocol EntropySource: AnyObject {
  func bytes(count: Int) -> [UInt8]
}

/// The operating system-seeded OpenSSL CSPRNG (`RAND_bytes`, NIST SP 800-90A DRBG).
public final class SystemEntropy: EntropySource {
  public init() {}

  /// Traps only if the CSPRNG itself fails; there is no safe way to continue without randomness.
  public func bytes(count: Int) -> [UInt8] { SecureRandom.bytes(count) }
}

/// A deterministic byte stream for reproducible tests and runs. NOT SECURE: anyone who knows the seed
/// knows every byte.
///
/// Block *i* (counting from 0) is SHA-256(seed as 8 little-endian bytes ‖ *i* as 8 little-endian
/// bytes); the stream is the concatenation of the blocks, consumed in order across calls.
public final class SeededEntropy: EntropySource {
  private let seed: UInt64
  private var counter: UInt64 = 0
  private var pending: [UInt8] = []

  public init(seed: UInt64) { self.seed = seed }

  public func bytes(count: Int) -> [UInt8] {
    precondition(count >= 0, "negative byte count")
    while pending.count < count {
      var block: [UInt8] = []
      block.reserveCapacity(16)
      withUnsafeBytes(of: seed.littleEndian) { block.append(contentsOf: $0) }
      withUnsafeBytes(of: counter.littleEndian) { block.append(contentsOf: $0) }
      counter += 1
      pending.append(contentsOf: HashAlgorithm.sha256.hash(block))
    }
    let result = Array(pending.prefix(count))
    pending.removeFirst(count)
    return result
  }
}

/// Direct access to the OpenSSL CSPRNG.
public enum SecureRandom {
  /// `count` bytes from `RAND_bytes`; traps if the CSPRNG fails (it cannot be reseeded by the caller).
  public static func bytes(_ count: Int) -> [UInt8] {
    precondition(count >= 0, "negative byte count")
    var output = [UInt8](repeating: 0, count: count)
    guard count > 0 else { return output }
    let result = output.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress, Int32($0.count)) }
    guard result == 1 else { fatalOpenSSL("RAND_bytes") }
    return output
  }
}
