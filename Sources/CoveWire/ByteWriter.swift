/// Appends fields to a growing byte array, little-endian unless the method says otherwise.
public struct ByteWriter: Sendable {
  public private(set) var bytes: [UInt8]

  public init(capacity: Int = 64) {
    bytes = []
    bytes.reserveCapacity(capacity)
  }

  public var count: Int { bytes.count }

  public mutating func append(_ value: UInt8) { bytes.append(value) }

  public mutating func append(_ value: UInt16) { appendLE(UInt64(value), 2) }

  /// A 24-bit little-endian integer; the caller guarantees `value < 2^24`.
  public mutating func appendU24(_ value: UInt32) {
    precondition(value < 1 << 24, "24-bit field overflow")
    appendLE(UInt64(value), 3)
  }

  public mutating func append(_ value: UInt32) { appendLE(UInt64(value), 4) }

  public mutating func append(_ value: UInt64) { appendLE(value, 8) }

  public mutating func appendBigEndian(_ value: UInt32) {
    for shift in stride(from: 24, through: 0, by: -8) {
      bytes.append(UInt8(truncatingIfNeeded: value >> UInt32(shift)))
    }
  }

  public mutating func append(contentsOf data: some Sequence<UInt8>) {
    bytes.append(contentsOf: data)
  }

  /// Appends `count` zero bytes (reserved fields, padding).
  public mutating func appendZeros(_ count: Int) {
    bytes.append(contentsOf: repeatElement(0, count: count))
  }

  mutating func appendLE(_ value: UInt64, _ width: Int) {
    for index in 0..<width { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt64(index)))) }
  }

  /// Overwrites a previously written little-endian u16, e.g. a length known only after the body.
  public mutating func patch(_ value: UInt16, at index: Int) {
    bytes[index] = UInt8(truncatingIfNeeded: value)
    bytes[index + 1] = UInt8(truncatingIfNeeded: value >> 8)
  }
}
