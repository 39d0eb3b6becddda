/// Takes a fuzz input apart field by field. Reads never fail: past the end of the input every
/// integer is 0 and every chunk is empty, so any input is a complete, if short, description.
public struct FuzzReader {
  public let input: [UInt8]
  public private(set) var index = 0

  public init(_ input: [UInt8]) { self.input = input }

  public var isAtEnd: Bool { index >= input.count }
  public var remaining: Int { max(0, input.count - index) }

  public mutating func u8() -> UInt8 {
    guard index < input.count else { return 0 }
    defer { index += 1 }
    return input[index]
  }

  /// Little-endian.
  public mutating func u16() -> UInt16 { UInt16(u8()) | UInt16(u8()) << 8 }
  public mutating func u32() -> UInt32 { UInt32(u16()) | UInt32(u16()) << 16 }
  public mutating func u64() -> UInt64 { UInt64(u32()) | UInt64(u32()) << 32 }

  /// Up to `count` bytes (fewer at the end of the input).
  public mutating func bytes(_ count: Int) -> [UInt8] {
    let end = index + min(max(0, count), remaining)
    defer { index = end }
    return Array(input[min(index, input.count)..<end])
  }

  /// A chunk with a one-byte length prefix.
  public mutating func chunk8() -> [UInt8] { bytes(Int(u8())) }
  /// A chunk with a two-byte (little-endian) length prefix.
  public mutating func chunk16() -> [UInt8] { bytes(Int(u16())) }
  /// Everything not read yet.
  public mutating func rest() -> [UInt8] { bytes(remaining) }
}
