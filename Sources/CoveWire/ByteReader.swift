/// A bounds-checked cursor over a byte array. Little-endian by default (PCIe, SPDM, TDISP and IDE_KM
/// are all little-endian); big-endian reads exist for the spdm-emu socket framing. Every read that
/// would run past the end throws ``WireError`` with the offset of the field, so decoders never index
/// out of range.
public struct ByteReader: Sendable {
  public let bytes: [UInt8]
  /// Offset of the next byte to read, relative to `bytes`.
  public private(set) var position: Int
  /// Added to `position` in errors, so a nested decoder reports offsets in the outer message.
  public let baseOffset: Int

  public init(_ bytes: [UInt8], baseOffset: Int = 0) {
    self.bytes = bytes
    self.position = 0
    self.baseOffset = baseOffset
  }

  public init(_ bytes: ArraySlice<UInt8>, baseOffset: Int = 0) {
    self.init(Array(bytes), baseOffset: baseOffset)
  }

  /// Bytes not yet read.
  public var remaining: Int { bytes.count - position }
  /// Absolute offset of the next byte, as reported in errors.
  public var offset: Int { baseOffset + position }
  public var isAtEnd: Bool { position == bytes.count }

  mutating func need(_ count: Int, _ field: String) throws(WireError) {
    guard count >= 0, remaining >= count else {
      throw WireError(.truncated, at: offset, field: field)
    }
  }

  public mutating func readU8(_ field: String) throws(WireError) -> UInt8 {
    try need(1, field)
    defer { position += 1 }
    return bytes[position]
  }

  public mutating func readU16(_ field: String) throws(WireError) -> UInt16 {
    UInt16(truncatingIfNeeded: try readLE(2, field))
  }

  /// A 24-bit little-endian integer (SPDM MeasurementRecordLength).

  public mutating func readU24(_ field: String) throws(WireError) -> UInt32 {
    UInt32(truncatingIfNeeded: try readLE(3, field))
  }

  public mutating func readU32(_ field: String) throws(WireError) -> UInt32 {
    UInt32(truncatingIfNeeded: try readLE(4, field))
  }

  public mutating func readU64(_ field: String) throws(WireError) -> UInt64 {
    try readLE(8, field)
  }

  public mutating func readU32BigEndian(_ field: String) throws(WireError) -> UInt32 {
    try need(4, field)
    var value: UInt32 = 0
    for index in 0..<4 { value = value << 8 | UInt32(bytes[position + index]) }
    position += 4
    return value
  }

  mutating func readLE(_ width: Int, _ field: String) throws(WireError) -> UInt64 {
    try need(width, field)
    var value: UInt64 = 0
    for index in 0..<width { value |= UInt64(bytes[position + index]) << (8 * UInt64(index)) }
    position += width
    return value
  }

  /// Reads exactly `count` bytes.

  public mutating func readBytes(_ count: Int, _ field: String) throws(WireError) -> [UInt8] {
    try need(count, field)
    defer { position += count }
    return Array(bytes[position..<position + count])
  }

  /// Reads a length-prefixed field whose length was already decoded, checking it against a cap first
  /// so a hostile length cannot make the decoder allocate or scan past what the specification allows.

  public mutating func readBytes(
    _ count: Int, cap: Int, _ field: String, lengthOffset: Int? = nil
  ) throws(WireError) -> [UInt8] {
    guard count <= cap else {
      throw WireError(.lengthOutOfRange, at: lengthOffset ?? offset, field: field)
    }
    return try readBytes(count, field)
  }

  /// Skips reserved bytes. Receivers ignore reserved fields (DSP0274 §7.2 "Reserved fields").

  public mutating func skip(_ count: Int, _ field: String) throws(WireError) {
    try need(count, field)
    position += count
  }

  /// All bytes not yet read.
  public mutating func readRest() -> [UInt8] {
    defer { position = bytes.count }
    return Array(bytes[position...])
  }

  /// Fails if any byte is left: a message with trailing bytes is malformed.

  public func expectEnd(_ message: String) throws(WireError) {
    guard isAtEnd else { throw WireError(.trailingBytes, at: offset, field: message) }
  }
}
