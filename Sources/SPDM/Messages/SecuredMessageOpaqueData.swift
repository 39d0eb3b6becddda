public import CoveWire

/// A DSP0277 secured-messages element carried in SPDM opaque data (DSP0277 "Secured Messages opaque
/// data" clause; libspdm spdm_secured_message.h): SMDataVersion u8 (= 1), SMDataID u8, then
/// SMDataID 0 "version selection" (SelectedVersion u16) or 1 "supported version list" (VersionCount u8,
/// VersionsList u16[]). Versions are VersionNumberEntry values (0x1000 = 1.0, 0x1100 = 1.1, …).
public enum SecuredMessageVersionElement: Hashable, Sendable {
  /// Sent by the Requester in KEY_EXCHANGE / PSK_EXCHANGE.
  case supportedVersions([UInt16])
  /// Sent by the Responder in KEY_EXCHANGE_RSP / PSK_EXCHANGE_RSP.
  case selectedVersion(UInt16)
  /// Any other element (another registry, or another SMDataID), kept verbatim.
  case other(registryID: UInt8, vendorID: [UInt8], data: [UInt8])
}

/// The DSP0274 general opaque data table, OpaqueDataFmt1 (DSP0274 1.2+ "General opaque data table format"
/// table): TotalElements u8, Reserved[3], then per element ID u8 (0 = DMTF), VendorLen u8,
/// VendorID[VendorLen], OpaqueElementDataLen u16, OpaqueElementData, AlignPadding so the element
/// occupies a multiple of 4 bytes.
public enum SecuredMessageOpaqueData {
  /// SMDataVersion defined by DSP0277.
  public static let smDataVersion: UInt8 = 1
  /// SMDataID values (DSP0277).
  public static let smDataIDVersionSelection: UInt8 = 0
  public static let smDataIDSupportedVersions: UInt8 = 1

  public static func encode(_ elements: [SecuredMessageVersionElement]) -> [UInt8] {
    precondition(elements.count <= Int(UInt8.max), "TotalElements is a u8")
    var writer = ByteWriter()
    writer.append(UInt8(elements.count))
    writer.appendZeros(3)
    for element in elements {
      let start = writer.count
      let registryID: UInt8
      let vendorID: [UInt8]
      var data: [UInt8]
      switch element {
      case .supportedVersions(let versions):
        precondition(versions.count <= Int(UInt8.max), "VersionCount is a u8")
        registryID = 0
        vendorID = []
        data = [smDataVersion, smDataIDSupportedVersions, UInt8(versions.count)]
        for version in versions { data += [UInt8(truncatingIfNeeded: version), UInt8(version >> 8)] }
      case .selectedVersion(let version):
        registryID = 0
        vendorID = []
        data = [
          smDataVersion, smDataIDVersionSelection, UInt8(truncatingIfNeeded: version), UInt8(version >> 8),
        ]
      case .other(let id, let vendor, let bytes):
        registryID = id
        vendorID = vendor
        data = bytes
      }
      writer.append(registryID)
      writer.append(UInt8(vendorID.count))
      writer.append(contentsOf: vendorID)
      writer.append(UInt16(data.count))
      writer.append(contentsOf: data)
      writer.appendZeros((4 - (writer.count - start) % 4) % 4)
    }
    return writer.bytes
  }

  /// Parses the whole opaque data field. `baseOffset` is the OpaqueData position in the enclosing message.
  public static func parse(_ bytes: [UInt8], baseOffset: Int = 0) throws(WireError)
    -> [SecuredMessageVersionElement]
  {
    var reader = ByteReader(bytes, baseOffset: baseOffset)
    let total = Int(try reader.readU8("TotalElements"))
    try reader.skip(3, "Reserved")
    var elements: [SecuredMessageVersionElement] = []
    for _ in 0..<total {
      let start = reader.position
      let registryID = try reader.readU8("ID")
      let vendorID = try reader.readBytes(Int(try reader.readU8("VendorLen")), "VendorID")
      let dataLength = Int(try reader.readU16("OpaqueElementDataLen"))
      let dataOffset = reader.offset
      let data = try reader.readBytes(dataLength, "OpaqueElementData")
      try reader.skip((4 - (reader.position - start) % 4) % 4, "AlignPadding")
      elements.append(try element(registryID: registryID, vendorID: vendorID, data: data, offset: dataOffset))
    }
    try reader.expectEnd("opaque data")
    return elements
  }

  private static func element(
    registryID: UInt8, vendorID: [UInt8], data: [UInt8], offset: Int
  ) throws(WireError) -> SecuredMessageVersionElement {
    guard registryID == 0, vendorID.isEmpty, data.count >= 2, data[0] == smDataVersion else {
      return .other(registryID: registryID, vendorID: vendorID, data: data)
    }
    var reader = ByteReader(data, baseOffset: offset)
    try reader.skip(2, "SMDataVersion, SMDataID")
    switch data[1] {
    case smDataIDVersionSelection:
      let version = try reader.readU16("SelectedVersion")
      try reader.expectEnd("version selection element")
      return .selectedVersion(version)
    case smDataIDSupportedVersions:
      let count = Int(try reader.readU8("VersionCount"))
      var versions: [UInt16] = []
      for _ in 0..<count { versions.append(try reader.readU16("VersionsList")) }
      try reader.expectEnd("supported version list element")
      return .supportedVersions(versions)
    default:
      return .other(registryID: registryID, vendorID: vendorID, data: data)
    }
  }
}
