import CoveWire
public import SPDM

/// Why a JSON Lines trace (`--trace FILE`) could not be read: the line (1-based; 0 for a lone line)
/// and the byte offset within it.
public struct TraceJSONError: Error, Hashable, Sendable, CustomStringConvertible {
  public var line: Int
  public var offset: Int
  public var detail: String

  public init(line: Int = 0, offset: Int, _ detail: String) {
    self.line = line
    self.offset = offset
    self.detail = detail
  }

  public var description: String { "trace line \(line), byte \(offset): \(detail)" }
}

extension TraceRecord {
  /// Reads back one line that ``jsonLine`` wrote. The parser takes only what that writer produces — a
  /// flat object of strings, unsigned integers, booleans (and null) — so it is a few dozen lines
  /// rather than Foundation (STYLE.md rule 7). Unknown keys are skipped (a newer writer's); a
  /// duplicate key, a missing required key or a value of the wrong type is refused.
  public init(jsonLine: String) throws(TraceJSONError) {
    var parser = FlatJSONParser(bytes: Array(jsonLine.utf8))
    let members = try parser.parseObject()
    var values: [String: (offset: Int, value: FlatJSONParser.Value)] = [:]
    for member in members {
      guard values[member.key] == nil else {
        throw TraceJSONError(offset: member.offset, "duplicate key \"\(member.key.prefix(40))\"")
      }
      values[member.key] = (member.offset, member.value)
    }
    func string(_ key: String) throws(TraceJSONError) -> String? {
      guard let entry = values[key] else { return nil }
      switch entry.value {
      case .string(let text): return text
      case .null: return nil
      default: throw TraceJSONError(offset: entry.offset, "\"\(key)\" is not a string")
      }
    }
    func integer(_ key: String) throws(TraceJSONError) -> UInt64? {
      guard let entry = values[key] else { return nil }
      switch entry.value {
      case .integer(let value): return value
      case .null: return nil
      default: throw TraceJSONError(offset: entry.offset, "\"\(key)\" is not an unsigned integer")
      }
    }
    func required<Value>(_ key: String, _ value: Value?) throws(TraceJSONError) -> Value {
      guard let value else { throw TraceJSONError(offset: 0, "missing \"\(key)\"") }
      return value
    }
    func int(_ key: String) throws(TraceJSONError) -> Int? {
      guard let value = try integer(key) else { return nil }
      guard value <= UInt64(Int.max) else {
        throw TraceJSONError(offset: values[key]!.offset, "\"\(key)\" too large")
      }
      return Int(value)
    }
    let componentText = try required("component", try string("component"))
    guard let component = Component(rawValue: componentText) else {
      throw TraceJSONError(
        offset: values["component"]!.offset, "unknown component \"\(componentText.prefix(40))\"")
    }
    let kindText = try required("kind", try string("kind"))
    guard let kind = Kind(rawValue: kindText) else {
      throw TraceJSONError(offset: values["kind"]!.offset, "unknown kind \"\(kindText.prefix(40))\"")
    }
    var bytes: [UInt8]?
    if let hex = try string("bytes") {
      guard hex.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }),
        let decoded = Hex.decode(hex)
      else { throw TraceJSONError(offset: values["bytes"]!.offset, "\"bytes\" is not lowercase hex") }
      bytes = decoded
    }
    var isRequest: Bool?
    if let entry = values["request"] {
      switch entry.value {
      case .bool(let value): isRequest = value
      case .null: isRequest = nil
      default: throw TraceJSONError(offset: entry.offset, "\"request\" is not a boolean")
      }
    }
    func lane(_ key: String) throws(TraceJSONError) -> Lane? {
      guard let text = try string(key) else { return nil }
      switch text {
      case "TSM": return .tsm
      case "DSM": return .dsm
      case "guest": return .guest
      case "IOMMU": return .iommu
      case "host": return .host
      case let tdi where tdi.hasPrefix("TDI "): return .tdi(String(tdi.dropFirst(4)))
      default: throw TraceJSONError(offset: values[key]!.offset, "unknown lane \"\(text.prefix(40))\"")
      }
    }
    self.init(
      sequence: try required("seq", try int("seq")), time: try required("time_ns", try integer("time_ns")),
      component: component, kind: kind, device: try string("device"),
      summary: try required("summary", try string("summary")), before: try string("before"),
      after: try string("after"), bytes: bytes, step: try int("step"), from: try lane("from"),
      to: try lane("to"),
      isRequest: isRequest)
  }
}

extension TraceDecoder {
  /// Pretty-prints a JSON Lines trace: one line per record, DOE objects decoded as in a capture
  /// (their direction taken from the record), clear SPDM/TDISP/IDE_KM records decoded with the
  /// codecs. Blank lines are skipped; the first malformed line throws, with its number.
  public static func decode(jsonLines text: String, sessions: [SPDMSessionSecrets] = [])
    throws(TraceJSONError)
    -> TraceDecoding
  {
    var decoder = TraceDecoder(sessions: sessions)
    var result = TraceDecoding()
    var number = 0
    // By bytes: a String would take "\r\n" as one Character.
    for line in text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
      number += 1
      guard line.contains(where: { ![0x20, 0x09, 0x0D].contains($0) }) else { continue }
      let record: TraceRecord
      do { record = try TraceRecord(jsonLine: String(decoding: line, as: UTF8.self)) } catch {
        var error = error
        error.line = number
        throw error
      }
      if let message = decoder.decode(record) {
        result.messages.append(message)
        result.lines.append(message.line)
      } else {
        result.lines.append(Self.line(record))
      }
    }
    return result
  }

  /// Decodes a record that carries a message (a DOE object, or SPDM/TDISP/IDE_KM in the clear with
  /// its direction); nil for any other record.
  public mutating func decode(_ record: TraceRecord) -> DecodedMessage? {
    guard let bytes = record.bytes else { return nil }
    switch record.kind {
    case .doe:
      return decode(dataObject: bytes, isRequest: record.isRequest, index: record.sequence, time: record.time)
    case .spdm, .tdisp, .idekm:
      guard let isRequest = record.isRequest else { return nil }
      return decode(
        clearMessage: bytes, kind: record.kind, isRequest: isRequest, index: record.sequence,
        time: record.time)
    default:
      return nil
    }
  }

  /// A record that is not a message, as one line: `#seq time component kind [device] summary
  /// (before → after)`.
  static func line(_ record: TraceRecord) -> String {
    var text =
      "#\(record.sequence) \(seconds(record.time)) \(record.component.rawValue) \(record.kind.rawValue)"
    if let device = record.device { text += " \(device)" }
    text += " \(record.summary)"
    switch (record.before, record.after) {
    case (let before?, let after?): text += " (\(before) → \(after))"
    case (let before?, nil): text += " (\(before))"
    case (nil, let after?): text += " (→ \(after))"
    case (nil, nil): break
    }
    return text
  }
}

/// A JSON (RFC 8259) object whose values are strings, unsigned integers, booleans or null: the shape
/// of a trace line. Nested objects, arrays, negative and fractional numbers are refused.
struct FlatJSONParser {
  enum Value: Hashable {
    case string(String)
    case integer(UInt64)
    case bool(Bool)
    case null
  }

  struct Member {
    var key: String
    var offset: Int
    var value: Value
  }

  let bytes: [UInt8]
  var position = 0

  init(bytes: [UInt8]) { self.bytes = bytes }

  private func fail(_ detail: String) -> TraceJSONError { TraceJSONError(offset: position, detail) }

  private mutating func skipWhitespace() {
    while position < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[position]) { position += 1 }
  }

  private mutating func expect(_ byte: UInt8, _ what: String) throws(TraceJSONError) {
    skipWhitespace()
    guard position < bytes.count, bytes[position] == byte else { throw fail("expected \(what)") }
    position += 1
  }

  mutating func parseObject() throws(TraceJSONError) -> [Member] {
    try expect(UInt8(ascii: "{"), "'{'")
    var members: [Member] = []
    skipWhitespace()
    if position < bytes.count, bytes[position] == UInt8(ascii: "}") {
      position += 1
    } else {
      while true {
        skipWhitespace()
        let offset = position
        let key = try parseString()
        try expect(UInt8(ascii: ":"), "':'")
        members.append(Member(key: key, offset: offset, value: try parseValue()))
        skipWhitespace()
        guard position < bytes.count else { throw fail("object not closed") }
        if bytes[position] == UInt8(ascii: ",") {
          position += 1
          continue
        }
        try expect(UInt8(ascii: "}"), "',' or '}'")
        break
      }
    }
    skipWhitespace()
    guard position == bytes.count else { throw fail("bytes after the object") }
    return members
  }

  private mutating func parseValue() throws(TraceJSONError) -> Value {
    skipWhitespace()
    guard position < bytes.count else { throw fail("value missing") }
    switch bytes[position] {
    case UInt8(ascii: "\""): return .string(try parseString())
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return .integer(try parseInteger())
    case UInt8(ascii: "t"):
      try literal("true")
      return .bool(true)
    case UInt8(ascii: "f"):
      try literal("false")
      return .bool(false)
    case UInt8(ascii: "n"):
      try literal("null")
      return .null
    default: throw fail("unsupported value (strings, unsigned integers, booleans and null only)")
    }
  }

  private mutating func literal(_ word: String) throws(TraceJSONError) {
    let expected = Array(word.utf8)
    guard bytes.count - position >= expected.count,
      Array(bytes[position..<position + expected.count]) == expected
    else { throw fail("expected \(word)") }
    position += expected.count
  }

  private mutating func parseInteger() throws(TraceJSONError) -> UInt64 {
    let start = position
    var value: UInt64 = 0
    while position < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[position]) {
      let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
      let (sum, overflow2) = times10.addingReportingOverflow(UInt64(bytes[position] - UInt8(ascii: "0")))
      guard !overflow1, !overflow2 else { throw fail("integer over 2^64 - 1") }
      value = sum
      position += 1
    }
    // RFC 8259 §6: no leading zeros; '.', 'e' or 'E' would make it a number Cove never writes.
    guard !(bytes[start] == UInt8(ascii: "0") && position - start > 1) else { throw fail("leading zero") }
    if position < bytes.count,
      [UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E")].contains(bytes[position])
    {
      throw fail("only unsigned integers are supported")
    }
    return value
  }

  private mutating func parseString() throws(TraceJSONError) -> String {
    guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else {
      throw fail("expected a string")
    }
    position += 1
    var out: [UInt8] = []
    while true {
      guard position < bytes.count else { throw fail("string not closed") }
      let byte = bytes[position]
      position += 1
      switch byte {
      case UInt8(ascii: "\""):
        return String(decoding: out, as: UTF8.self)
      case UInt8(ascii: "\\"):
        guard position < bytes.count else { throw fail("escape not finished") }
        let escape = bytes[position]
        position += 1
        switch escape {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(escape)
        case UInt8(ascii: "b"): out.append(0x08)
        case UInt8(ascii: "f"): out.append(0x0C)
        case UInt8(ascii: "n"): out.append(0x0A)
        case UInt8(ascii: "r"): out.append(0x0D)
        case UInt8(ascii: "t"): out.append(0x09)
        case UInt8(ascii: "u"):
          var scalar = UInt32(try hex4())
          if (0xD800..<0xDC00).contains(scalar) {
            // A high surrogate must be followed by an escaped low one (RFC 8259 §7).
            guard bytes.count - position >= 2, bytes[position] == UInt8(ascii: "\\"),
              bytes[position + 1] == UInt8(ascii: "u")
            else { throw fail("lone surrogate") }
            position += 2
            let low = UInt32(try hex4())
            guard (0xDC00..<0xE000).contains(low) else { throw fail("lone surrogate") }
            scalar = 0x10000 + (scalar - 0xD800) << 10 + (low - 0xDC00)
          }
          guard let unicode = Unicode.Scalar(scalar) else { throw fail("lone surrogate") }
          UTF8.encode(unicode) { out.append($0) }
        default: throw fail("unknown escape")
        }
      case 0x00..<0x20: throw fail("control character in a string")
      default: out.append(byte)
      }
    }
  }

  private mutating func hex4() throws(TraceJSONError) -> UInt16 {
    guard bytes.count - position >= 4 else { throw fail("\\u needs four hex digits") }
    var value: UInt16 = 0
    for _ in 0..<4 {
      let byte = bytes[position]
      let nibble: UInt8
      switch byte {
      case UInt8(ascii: "0")...UInt8(ascii: "9"): nibble = byte - UInt8(ascii: "0")
      case UInt8(ascii: "a")...UInt8(ascii: "f"): nibble = byte - UInt8(ascii: "a") + 10
      case UInt8(ascii: "A")...UInt8(ascii: "F"): nibble = byte - UInt8(ascii: "A") + 10
      default: throw fail("\\u needs four hex digits")
      }
      value = value << 4 | UInt16(nibble)
      position += 1
    }
    return value
  }
}
