public import CoveWire

/// INTERFACE_ID (PCIe 6.x §11.3.3, INTERFACE_ID): FUNCTION_ID u32 then 8 reserved bytes. FUNCTION_ID
/// holds the requester ID of the function hosting the TDI in bits 15:0, its segment in 23:16, and in bit
/// 24 whether the segment is valid; bits 31:25 are reserved.
public struct TDISPInterfaceID: Hashable, Sendable, CustomStringConvertible {
  /// Size on the wire.
  public static let size = 12

  public var functionID: UInt32

  public init(functionID: UInt32) { self.functionID = functionID }

  public init(requesterID: UInt16, segment: UInt8? = nil) {
    var value = UInt32(requesterID)
    if let segment { value |= UInt32(segment) << 16 | 1 << 24 }
    functionID = value
  }

  /// Bus/device/function of the hosting function (FUNCTION_ID bits 15:0).
  public var requesterID: UInt16 { UInt16(truncatingIfNeeded: functionID) }
  /// The segment (bits 23:16), or nil when bit 24 (segment valid) is clear.
  public var segment: UInt8? { functionID & 1 << 24 != 0 ? UInt8(truncatingIfNeeded: functionID >> 16) : nil }

  /// Reads FUNCTION_ID and skips the 8 reserved bytes (receivers ignore reserved fields). FUNCTION_ID's
  /// reserved bits 31:25 are kept so an ID compares unequal if a peer sets them.
  public static func parse(_ reader: inout ByteReader) throws(WireError) -> TDISPInterfaceID {
    let functionID = try reader.readU32("INTERFACE_ID.FUNCTION_ID")
    try reader.skip(8, "INTERFACE_ID reserved")
    return TDISPInterfaceID(functionID: functionID)
  }

  public func encode(into writer: inout ByteWriter) {
    writer.append(functionID)
    writer.appendZeros(8)
  }

  public var description: String {
    // The BDF spelling Linux and lspci use: 03:00.1, or 0001:03:00.1 with a segment.
    func hex(_ value: Int, _ digits: Int) -> String {
      let text = String(value, radix: 16)
      return String(repeating: "0", count: max(0, digits - text.count)) + text
    }
    let rid = Int(requesterID)
    let bdf = "\(hex(rid >> 8, 2)):\(hex(rid >> 3 & 0x1F, 2)).\(rid & 7)"
    if let segment { return "\(hex(Int(segment), 4)):\(bdf)" }
    return bdf
  }
}

/// The 16-byte header every TDISP message starts with (PCIe 6.x §11.3.3, TDISP message format):
/// TDISPVersion u8, MessageType u8, reserved u16, INTERFACE_ID (12 bytes).
public struct TDISPMessageHeader: Hashable, Sendable {
  public static let size = 16

  public var version: TDISPVersion
  public var messageType: UInt8
  public var interfaceID: TDISPInterfaceID

  public init(version: TDISPVersion = .v10, messageType: UInt8, interfaceID: TDISPInterfaceID) {
    self.version = version
    self.messageType = messageType
    self.interfaceID = interfaceID
  }

  public static func parse(_ reader: inout ByteReader) throws(WireError) -> TDISPMessageHeader {
    let version = TDISPVersion(rawValue: try reader.readU8("TDISPVersion"))
    let messageType = try reader.readU8("MessageType")
    try reader.skip(2, "reserved")
    let interfaceID = try TDISPInterfaceID.parse(&reader)
    return TDISPMessageHeader(version: version, messageType: messageType, interfaceID: interfaceID)
  }

  public init(parsing bytes: [UInt8]) throws(WireError) {
    var reader = ByteReader(bytes)
    self = try Self.parse(&reader)
    try reader.expectEnd("TDISP message header")
  }

  public func encode(into writer: inout ByteWriter) {
    writer.append(version.rawValue)
    writer.append(messageType)
    writer.appendZeros(2)
    interfaceID.encode(into: &writer)
  }

  public func encode() -> [UInt8] {
    var writer = ByteWriter(capacity: Self.size)
    encode(into: &writer)
    return writer.bytes
  }
}

/// Limits that follow from how TDISP is carried.
public enum TDISPLimits {
  /// A TDISP message travels in a PCI-SIG VENDOR_DEFINED payload whose length is a u16 and whose first
  /// byte is the protocol ID (PCIe 6.x §6.31.3), so a TDISP message is at most 65534 bytes.
  public static let maximumMessageSize = Int(UInt16.max) - 1
  /// START_INTERFACE nonce size (§11.3.9, Table 11-11 LOCK_INTERFACE_RESPONSE: 32 bytes).
  public static let nonceSize = 32
}
