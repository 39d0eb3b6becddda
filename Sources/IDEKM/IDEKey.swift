/// A 256-bit AES-GCM IDE key (PCIe 6.x §6.33.3 KEY_PROG "Key DW0–DW7"; §6.33.5 AES-GCM-256).
///
/// Byte order (PROTOCOLS.md, IDE_KM): the AES key k[0…31] in FIPS-197 order is split into eight
/// DWORDs, DW n = k[4n…4n+3], each DWORD big-endian (k[4n] its most-significant byte); KEY_PROG
/// carries DW7 first. So wire[4i + j] = k[4(7 − i) + j]: the DWORD order is reversed, bytes inside a
/// DWORD are not. Real host software does the same DWORD reversal when copying the KEY_PROG key into
/// root-port key registers.
public struct IDEKey: Hashable, Sendable {
  public static let byteCount = 32

  /// The key bytes in KEY_PROG wire order.
  public var wire: [UInt8]

  /// A key from its 32 bytes in KEY_PROG wire order.
  public init(wire: [UInt8]) {
    precondition(wire.count == Self.byteCount, "an IDE key is 8 DW")
    self.wire = wire
  }

  /// A key from its 32 AES-256 bytes in FIPS-197 order.
  public init(aes256 key: [UInt8]) {
    precondition(key.count == Self.byteCount, "an AES-256 key is 32 bytes")
    wire = Self.reverseDWords(key)
  }

  /// The AES-256 key bytes in FIPS-197 order, as a cipher takes them.
  public var aes256: [UInt8] { Self.reverseDWords(wire) }

  /// Reverses the order of the eight DWORDs, keeping each DWORD's bytes; its own inverse.
  static func reverseDWords(_ bytes: [UInt8]) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count)
    for dword in stride(from: bytes.count / 4 - 1, through: 0, by: -1) {
      out.append(contentsOf: bytes[4 * dword..<4 * dword + 4])
    }
    return out
  }
}
