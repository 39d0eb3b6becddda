public import CoveWire

/// An SPDM protocol version as carried in the `SPDMVersion` byte of every message header
/// (DSP0274 "Generic SPDM message format" table): major version in bits 7:4, minor in bits 3:0.
public struct SPDMVersion: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
  public var rawValue: UInt8
  public init(rawValue: UInt8) { self.rawValue = rawValue }
  public init(major: UInt8, minor: UInt8) { self.rawValue = (major & 0xF) << 4 | (minor & 0xF) }

  /// GET_VERSION and VERSION always carry 1.0 (DSP0274 GET_VERSION / VERSION message format tables).
  public static let v10 = SPDMVersion(rawValue: 0x10)
  public static let v11 = SPDMVersion(rawValue: 0x11)
  public static let v12 = SPDMVersion(rawValue: 0x12)
  public static let v13 = SPDMVersion(rawValue: 0x13)

  public var major: UInt8 { rawValue >> 4 }
  public var minor: UInt8 { rawValue & 0xF }

  /// From a VERSION response VersionNumberEntry (DSP0274 "VersionNumberEntry definition" table:
  /// MajorVersion bits 15:12, MinorVersion 11:8, UpdateVersionNumber 7:4, Alpha 3:0). Update and
  /// alpha are dropped: they do not take part in version negotiation.
  public init(versionNumberEntry: UInt16) {
    self.rawValue = UInt8(truncatingIfNeeded: versionNumberEntry >> 8)
  }

  /// The VersionNumberEntry with update version and alpha zero.
  public var versionNumberEntry: UInt16 { UInt16(rawValue) << 8 }

  public var description: String { "\(major).\(minor)" }

  public static func < (lhs: SPDMVersion, rhs: SPDMVersion) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// The four-byte header that starts every SPDM message (DSP0274 "Generic SPDM message format" table):
/// SPDMVersion, RequestResponseCode, Param1, Param2.
public struct SPDMHeader: Hashable, Sendable {
  public var version: SPDMVersion
  public var code: UInt8
  public var param1: UInt8
  public var param2: UInt8

  public init(version: SPDMVersion, code: UInt8, param1: UInt8 = 0, param2: UInt8 = 0) {
    self.version = version
    self.code = code
    self.param1 = param1
    self.param2 = param2
  }

  public init(parsing reader: inout ByteReader) throws(WireError) {
    version = SPDMVersion(rawValue: try reader.readU8("SPDMVersion"))
    code = try reader.readU8("RequestResponseCode")
    param1 = try reader.readU8("Param1")
    param2 = try reader.readU8("Param2")
  }

  /// Reads a header and checks its RequestResponseCode as soon as it is read, so a message of the
  /// wrong kind is reported as such (offset 1) even when it is also too short.
  static func parse(
    _ reader: inout ByteReader, expecting code: UInt8, _ message: String
  ) throws(WireError) -> SPDMHeader {
    let version = SPDMVersion(rawValue: try reader.readU8("SPDMVersion"))
    let codeOffset = reader.offset
    let actual = try reader.readU8("RequestResponseCode")
    guard actual == code else {
      throw WireError(.unexpectedMessage, at: codeOffset, field: "RequestResponseCode (expected \(message))")
    }
    let param1 = try reader.readU8("Param1")
    let param2 = try reader.readU8("Param2")
    return SPDMHeader(version: version, code: actual, param1: param1, param2: param2)
  }

  public func encode(into writer: inout ByteWriter) {
    writer.append(version.rawValue)
    writer.append(code)
    writer.append(param1)
    writer.append(param2)
  }

  /// Peeks at the header of a raw message without decoding the body.
  public init(peeking bytes: [UInt8]) throws(WireError) {
    var reader = ByteReader(bytes)
    try self.init(parsing: &reader)
  }
}

/// Opaque data fields: "The value should not be greater than 1024 bytes" (DSP0274 1.2/1.3, OpaqueLength
/// in the CHALLENGE_AUTH, MEASUREMENTS, KEY_EXCHANGE and KEY_EXCHANGE_RSP message format tables); libspdm enforces the
/// same bound (SPDM_MAX_OPAQUE_DATA_SIZE).
public let spdmMaxOpaqueDataLength = 1024
/// Nonce and random-data fields are 32 bytes (DSP0274 CHALLENGE and KEY_EXCHANGE request tables).
public let spdmNonceSize = 32
/// RequesterContext, added in 1.3 to CHALLENGE, CHALLENGE_AUTH, GET_MEASUREMENTS and MEASUREMENTS.
public let spdmRequesterContextSize = 8

extension ByteReader {
  /// OpaqueLength u16 followed by OpaqueData, capped (see ``spdmMaxOpaqueDataLength``).
  mutating func readOpaqueData() throws(WireError) -> [UInt8] {
    let lengthOffset = offset
    let length = Int(try readU16("OpaqueLength"))
    return try readBytes(length, cap: spdmMaxOpaqueDataLength, "OpaqueData", lengthOffset: lengthOffset)
  }
}

extension ByteWriter {
  mutating func appendOpaqueData(_ data: [UInt8]) {
    append(UInt16(truncatingIfNeeded: data.count))
    append(contentsOf: data)
  }
}
