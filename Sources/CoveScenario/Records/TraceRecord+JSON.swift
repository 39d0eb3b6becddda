/// JSON Lines (`--trace FILE`): one object per record, keys in a fixed order, so two runs with the
/// same seed write the same bytes. Written by hand: the format is small and fixed, and the library
/// targets do without Foundation (STYLE.md rule 7).
extension TraceRecord {
  public var jsonLine: String {
    var fields: [String] = [
      "\"seq\":\(sequence)", "\"time_ns\":\(time)", "\"component\":\(Self.quote(component.rawValue))",
      "\"kind\":\(Self.quote(kind.rawValue))",
    ]
    if let step { fields.append("\"step\":\(step)") }
    if let device { fields.append("\"device\":\(Self.quote(device))") }
    fields.append("\"summary\":\(Self.quote(summary))")
    if let before { fields.append("\"before\":\(Self.quote(before))") }
    if let after { fields.append("\"after\":\(Self.quote(after))") }
    if let from { fields.append("\"from\":\(Self.quote(from.description))") }
    if let to { fields.append("\"to\":\(Self.quote(to.description))") }
    if let isRequest { fields.append("\"request\":\(isRequest)") }
    if let bytes { fields.append("\"bytes\":\"\(Self.hex(bytes))\"") }
    return "{" + fields.joined(separator: ",") + "}"
  }

  static func hex(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out = [UInt8]()
    out.reserveCapacity(bytes.count * 2)
    for byte in bytes {
      out.append(digits[Int(byte >> 4)])
      out.append(digits[Int(byte & 0xF)])
    }
    return String(decoding: out, as: UTF8.self)
  }

  /// A JSON string literal (RFC 8259 §7): quotes, backslashes and control characters escaped.
  static func quote(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
      switch scalar {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case "\r": out += "\\r"
      case "\t": out += "\\t"
      case let c where c.value < 0x20:
        let hex = String(c.value, radix: 16)
        out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
      default: out.unicodeScalars.append(scalar)
      }
    }
    return out + "\""
  }
}
