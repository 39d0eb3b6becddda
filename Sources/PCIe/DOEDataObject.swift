public import CoveWire

/// A DOE data object type, the byte that selects the protocol within a vendor's namespace
/// (PCIe 6.x §6.30.1, Data Object Header 1, bits 23:16).
///
/// A struct rather than an enum so a type Cove does not know still round-trips (a peer may offer
/// vendor-defined protocols in discovery). The named constants are the PCI-SIG ones, meaningful
/// with vendor ID ``DOEProtocol/pciSIGVendorID``.
public struct DOEDataObjectType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
  public var rawValue: UInt8
  public init(rawValue: UInt8) { self.rawValue = rawValue }

  /// DOE Discovery (PCIe 6.x §6.30.1.1): lists the protocols a mailbox supports.
  public static let discovery = DOEDataObjectType(rawValue: 0x00)
  /// CMA/SPDM: an SPDM message (DSP0274) as the payload (PCIe 6.x §6.31.3).
  public static let spdm = DOEDataObjectType(rawValue: 0x01)
  /// Secured CMA/SPDM: a DSP0277 secured message as the payload (PCIe 6.x §6.31.4).
  public static let securedSPDM = DOEDataObjectType(rawValue: 0x02)

  public var description: String {
    switch self {
    case .discovery: "discovery"
    case .spdm: "SPDM"
    case .securedSPDM: "secured SPDM"
    default: "type 0x" + String(rawValue, radix: 16)
    }
  }
}

/// A protocol a DOE mailbox can carry: the (vendor ID, data object type) pair that heads every data
/// object of that protocol and that DOE Discovery reports (PCIe 6.x §6.30.1.1).
public struct DOEProtocol: Hashable, Sendable, CustomStringConvertible {
  /// The PCI-SIG vendor ID, which owns the discovery, CMA/SPDM and secured CMA/SPDM types.
  public static let pciSIGVendorID: UInt16 = 0x0001

  public var vendorID: UInt16
  public var type: UInt8

  public init(vendorID: UInt16, type: UInt8) {
    self.vendorID = vendorID
    self.type = type
  }

  public init(vendorID: UInt16 = DOEProtocol.pciSIGVendorID, type: DOEDataObjectType) {
    self.init(vendorID: vendorID, type: type.rawValue)
  }

  /// The type as a typed code (the raw byte stays in ``type``).
  public var dataObjectType: DOEDataObjectType { DOEDataObjectType(rawValue: type) }

  /// PCI-SIG DOE Discovery (PCIe 6.x §6.30.1.1).
  public static let discovery = DOEProtocol(type: .discovery)
  /// PCI-SIG CMA/SPDM (PCIe 6.x §6.31.3).
  public static let spdm = DOEProtocol(type: .spdm)
  /// PCI-SIG secured CMA/SPDM (PCIe 6.x §6.31.4).
  public static let securedSPDM = DOEProtocol(type: .securedSPDM)

  public var description: String {
    vendorID == Self.pciSIGVendorID
      ? "PCI-SIG \(dataObjectType)"
      : "vendor 0x\(String(vendorID, radix: 16)) type 0x\(String(type, radix: 16))"
  }
}

/// One DOE data object: the unit a DOE mailbox moves (PCIe 6.x §6.30.1, Figure "DOE Data Object
/// Format").
///
/// Wire layout, little-endian DWs:
/// - DW0 (Data Object Header 1): vendor ID in bits 15:0, data object type in bits 23:16, reserved
///   bits 31:24.
/// - DW1 (Data Object Header 2): length in DWs in bits 17:0, counting both header DWs; 0 means 2^18
///   DWs. Bits 31:18 are reserved.
/// - The payload, padded with zeros to a whole DW (a DOE mailbox moves only whole DWs).
///
/// Because the length counts DWs, the object cannot say how many of the last DW's bytes are padding.
/// ``init(parsing:)`` therefore keeps the padding in ``payload``; the protocol carried inside (SPDM,
/// secured SPDM, discovery) knows its own lengths and ignores the tail.
public struct DOEDataObject: Hashable, Sendable {
  public var vendorID: UInt16
  public var type: UInt8
  /// The payload. When decoded, includes the zero padding up to the DW boundary (see above).
  public var payload: [UInt8]

  /// Size of the two header DWs in bytes.
  public static let headerBytes = 8
  /// The largest object in DWs, header included: the length field is 18 bits and 0 encodes 2^18
  /// (PCIe 6.x §6.30.1, Data Object Header 2, Length).
  public static let maxDWords = 1 << 18
  /// The largest object in bytes: 2^18 DWs = 1 MiB (PCIe 6.x §6.30.1).
  public static let maxBytes = maxDWords * 4
  /// The largest payload in bytes: the maximum object less the two header DWs (PCIe 6.x §6.30.1).
  public static let maxPayloadBytes = maxBytes - headerBytes

  /// Bits 17:0 of Data Object Header 2 hold the length; bits 31:18 are reserved (PCIe 6.x §6.30.1).
  static let lengthMask: UInt32 = 0x3_FFFF

  /// Builds an object. A payload over ``maxPayloadBytes`` is a programming error: no DOE object can
  /// hold it (PCIe 6.x §6.30.1), so the layer above must have split or refused it already.
  public init(vendorID: UInt16, type: UInt8, payload: [UInt8]) {
    precondition(
      payload.count <= Self.maxPayloadBytes,
      "DOE payload of \(payload.count) bytes exceeds the 2^18-DW object limit")
    self.vendorID = vendorID
    self.type = type
    self.payload = payload
  }

  public init(protocol dataProtocol: DOEProtocol, payload: [UInt8]) {
    self.init(vendorID: dataProtocol.vendorID, type: dataProtocol.type, payload: payload)
  }

  /// The (vendor ID, type) pair that selects the handler for this object.
  public var dataProtocol: DOEProtocol { DOEProtocol(vendorID: vendorID, type: type) }

  /// Length in DWs including the header, as it will appear on the wire (before the 2^18 → 0 encoding).
  public var lengthInDWords: Int { 2 + (payload.count + 3) / 4 }

  /// The Data Object Header 2 value: the DW length, with 2^18 encoded as 0 (PCIe 6.x §6.30.1).
  var lengthField: UInt32 {
    UInt32(truncatingIfNeeded: lengthInDWords) & Self.lengthMask
  }

  /// The wire bytes: header, payload, zero padding to a DW.
  public func encode() -> [UInt8] {
    precondition(
      payload.count <= Self.maxPayloadBytes,
      "DOE payload of \(payload.count) bytes exceeds the 2^18-DW object limit")
    var writer = ByteWriter(capacity: lengthInDWords * 4)
    writer.append(vendorID)
    writer.append(type)
    writer.append(UInt8(0))  // reserved, bits 31:24 of Data Object Header 1
    writer.append(lengthField)
    writer.append(contentsOf: payload)
    writer.appendZeros((4 - payload.count % 4) % 4)
    return writer.bytes
  }

  /// The object as the DWs a mailbox moves, each the little-endian reading of 4 wire bytes.
  public func encodeDWords() -> [UInt32] {
    let bytes = encode()
    var dwords: [UInt32] = []
    dwords.reserveCapacity(bytes.count / 4)
    for index in stride(from: 0, to: bytes.count, by: 4) {
      dwords.append(
        UInt32(bytes[index]) | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2]) << 16
          | UInt32(bytes[index + 3]) << 24)
    }
    return dwords
  }

  /// Decodes exactly one data object occupying all of `bytes`.
  ///
  /// Rejects, with the offset of the offending field:
  /// - more than 2^20 bytes (`lengthOutOfRange` at offset 2^20, the first byte past the limit);
  /// - fewer than the 8 header bytes (`truncated` at the missing field);
  /// - a byte count that is not whole DWs (`truncated` at the start of the partial DW): a mailbox
  ///   moves DWs only;
  /// - reserved bits 31:18 of the length DW set (`invalidValue` at 4); Cove is strict here because a
  ///   set bit most likely means a length from a device with a larger (non-conforming) limit;
  /// - a length that differs from the DWs present (`lengthOutOfRange` at 4): PCIe 6.x §6.30.1 says
  ///   such an object is discarded.
  public init(parsing bytes: [UInt8]) throws(WireError) {
    // Cap first, so a hostile buffer is not scanned: 2^18 DWs is the largest object (PCIe 6.x §6.30.1).
    guard bytes.count <= Self.maxBytes else {
      throw WireError(.lengthOutOfRange, at: Self.maxBytes, field: "DOE data object (over 2^18 DW)")
    }
    var reader = ByteReader(bytes)
    let vendorID = try reader.readU16("Vendor ID")
    let type = try reader.readU8("Data Object Type")
    try reader.skip(1, "Reserved (Data Object Header 1)")
    let length = try reader.readU32("Length")
    guard bytes.count % 4 == 0 else {
      throw WireError(.truncated, at: bytes.count - bytes.count % 4, field: "DOE data object DW")
    }
    guard length & ~Self.lengthMask == 0 else {
      throw WireError(.invalidValue, at: 4, field: "Length (reserved bits 31:18)")
    }
    let dwords = length == 0 ? Self.maxDWords : Int(length)
    guard dwords == bytes.count / 4 else {
      throw WireError(.lengthOutOfRange, at: 4, field: "Length (differs from the DWs present)")
    }
    self.vendorID = vendorID
    self.type = type
    self.payload = reader.readRest()
  }

  /// Decodes an object from the DWs a mailbox moved.
  public init(parsingDWords dwords: [UInt32]) throws(WireError) {
    // Check the cap before building the byte array (PCIe 6.x §6.30.1: at most 2^18 DWs).
    guard dwords.count <= Self.maxDWords else {
      throw WireError(.lengthOutOfRange, at: Self.maxBytes, field: "DOE data object (over 2^18 DW)")
    }
    var bytes: [UInt8] = []
    bytes.reserveCapacity(dwords.count * 4)
    for dword in dwords {
      bytes.append(UInt8(truncatingIfNeeded: dword))
      bytes.append(UInt8(truncatingIfNeeded: dword >> 8))
      bytes.append(UInt8(truncatingIfNeeded: dword >> 16))
      bytes.append(UInt8(truncatingIfNeeded: dword >> 24))
    }
    try self.init(parsing: bytes)
  }
}
