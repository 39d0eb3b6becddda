/// Hex rendering and parsing for logs, test vectors and the CLI.
public enum Hex {
  public static func encode(_ bytes: some Sequence<UInt8>) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    for byte in bytes {
      out.append(digits[Int(byte >> 4)])
      out.append(digits[Int(byte & 0xF)])
    }
    return String(decoding: out, as: UTF8.self)
  }

  /// Parses hex, ignoring spaces, newlines and underscores. Returns nil on an odd digit count or a
  /// non-hex character.
  public static func decode(_ text: String) -> [UInt8]? {
    var out: [UInt8] = []
    var high: UInt8?
    for char in text.utf8 {
      let nibble: UInt8
      switch char {
      case UInt8(ascii: "0")...UInt8(ascii: "9"): nibble = char - UInt8(ascii: "0")
      case UInt8(ascii: "a")...UInt8(ascii: "f"): nibble = char - UInt8(ascii: "a") + 10
      case UInt8(ascii: "A")...UInt8(ascii: "F"): nibble = char - UInt8(ascii: "A") + 10
      case UInt8(ascii: " "), UInt8(ascii: "\n"), UInt8(ascii: "_"), UInt8(ascii: "\t"): continue
      default: return nil
      }
      if let value = high {
        out.append(value << 4 | nibble)
        high = nil
      } else {
        high = nibble
      }
    }
    return high == nil ? out : nil
  }
}
