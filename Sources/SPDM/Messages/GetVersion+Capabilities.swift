public import CoveWire

/// GET_VERSION (DSP0274 "GET_VERSION request message format" table): header only; SPDMVersion is always
/// 0x10 so that any Responder can parse it.
public struct GetVersionRequest: Hashable, Sendable {
  public static let code = SPDMRequestCode.getVersion
  public init() {}

  public init(parsing bytes: [UInt8]) throws(WireError) {
    var reader = ByteReader(bytes)
    let header = try SPDMHeader.parse(&reader, expecting: Self.code.rawValue, "GET_VERSION")
    // "SPDMVersion: Shall be 0x10" for GET_VERSION.
    guard header.version == .v10 else { throw WireError(.invalidValue, at: 0, field: "SPDMVersion") }
    try reader.expectEnd("GET_VERSION")
  }

  public func encode() -> [UInt8] { [SPDMVersion.v10.rawValue, Self.code.rawValue, 0, 0] }
}

/// VERSION (DSP0274 "Successful VERSION response message format" table): header (version 0x10),
/// Reserved u8, VersionNumberEntryCount u8, then that many u16 VersionNumberEntry values.
public struct VersionResponse: Hashable, Sendable {
  public static let code = SPDMResponseCode.version
  /// The entries as sent, including UpdateVersionNumber and Alpha nibbles.
  public var versionNumberEntries: [UInt16]

  /// Versions with update/alpha nibbles zero.
  public init(versions: [SPDMVersion]) { versionNumberEntries = versions.map(\.versionNumberEntry) }
  public init(versionNumberEntries: [UInt16]) { self.versionNumberEntries = versionNumberEntries }

  public var versions: [SPDMVersion] { versionNumberEntries.map(SPDMVersion.init(versionNumberEntry:)) }

  public init(parsing bytes: [UInt8]) throws(WireError) {
    var reader = ByteReader(bytes)
    let header = try SPDMHeader.parse(&reader, expecting: Self.code.rawValue, "VERSION")
    // "SPDMVersion: Shall be 0x10" for VERSION.
    guard header.version == .v10 else { throw WireError(.invalidValue, at: 0, field: "SPDMVersion") }
    try reader.skip(1, "Reserved")
    // VersionNumberEntryCount is a u8, so at most 255 entries; the specification sets no smaller bound.
    let count = Int(try reader.readU8("VersionNumberEntryCount"))
    var entries: [UInt16] = []
    entries.reserveCapacity(count)
    for _ in 0..<count { entries.append(try reader.readU16("VersionNumberEntry")) }
    try reader.expectEnd("VERSION")
    versionNumberEntries = entries
  }

  public func encode() -> [UInt8] {
    precondition(versionNumberEntries.count <= 255, "VersionNumberEntryCount is a u8")
    var writer = ByteWriter()
    SPDMHeader(version: .v10, code: Self.code.rawValue).encode(into: &writer)
    writer.append(UInt8(0))
    writer.append(UInt8(versionNumberEntries.count))
    for entry in versionNumberEntries { writer.append(entry) }
    return writer.bytes
  }
}

/// GET_CAPABILITIES (DSP0274 "GET_CAPABILITIES request message format" table). Layout by version:
/// 1.0 is the header only; 1.1 adds Reserved u8, CTExponent u8, Reserved u16, Flags u32 (12 bytes);
/// 1.2+ adds DataTransferSize u32 and MaxSPDMmsgSize u32 (20 bytes).
public struct GetCapabilitiesRequest: Hashable, Sendable {
  public static let code = SPDMRequestCode.getCapabilities
  public var version: SPDMVersion
  public var ctExponent: UInt8
  public var flags: RequesterCapabilities
  public var dataTransferSize: UInt32
  public var maxSPDMMessageSize: UInt32

  public init(
    version: SPDMVersion, ctExponent: UInt8 = 0, flags: RequesterCapabilities = [],
    dataTransferSize: UInt32 = 0, maxSPDMMessageSize: UInt32 = 0
  ) {
    self.version = version
    self.ctExponent = ctExponent
    self.flags = flags
    self.dataTransferSize = dataTransferSize
    self.maxSPDMMessageSize = maxSPDMMessageSize
  }

  public init(parsing bytes: [UInt8]) throws(WireError) {
    var reader = ByteReader(bytes)
    let header = try SPDMHeader.parse(&reader, expecting: Self.code.rawValue, "GET_CAPABILITIES")
    version = header.version
    ctExponent = 0
    flags = []
    dataTransferSize = 0
    maxSPDMMessageSize = 0
    if version >= .v11 {
      try reader.skip(1, "Reserved")
      ctExponent = try reader.readU8("CTExponent")
      try reader.skip(2, "Reserved")
      flags = RequesterCapabilities(rawValue: try reader.readU32("Flags"))
    }
    if version >= .v12 {
      dataTransferSize = try reader.readU32("DataTransferSize")
      maxSPDMMessageSize = try reader.readU32("MaxSPDMmsgSize")
    }
    try reader.expectEnd("GET_CAPABILITIES")
  }

  public func encode() -> [UInt8] {
    var writer = ByteWriter()
    SPDMHeader(version: version, code: Self.code.rawValue).encode(into: &writer)
    if version >= .v11 {
      writer.append(UInt8(0))
      writer.append(ctExponent)
      writer.append(UInt16(0))
      writer.append(flags.rawValue)
    }
    if version >= .v12 {
      writer.append(dataTransferSize)
      writer.append(maxSPDMMessageSize)
    }
    return writer.bytes
  }
}

/// CAPABILITIES (DSP0274 "Successful CAPABILITIES response message format" table): Reserved u8,
/// CTExponent u8, Reserved u16, Flags u32 (1.0/1.1: 12 bytes); 1.2+ adds DataTransferSize u32 and
/// MaxSPDMmsgSize u32 (20 bytes). The 1.3 SupportedAlgorithms block (Param1 bit 0) is not supported.
public struct CapabilitiesResponse: Hashable, Sendable {
  public static let code = SPDMResponseCode.capabilities
  public var version: SPDMVersion
  public var ctExponent: UInt8
  public var flags: ResponderCapabilities
  public var dataTransferSize: UInt32
  public var maxSPDMMessageSize: UInt32

  public init(
    version: SPDMVersion, ctExponent: UInt8 = 0, flags: ResponderCapabilities = [],
    dataTransferSize: UInt32 = 0, maxSPDMMessageSize: UInt32 = 0
  ) {
    self.version = version
    self.ctExponent = ctExponent
    self.flags = flags
    self.dataTransferSize = dataTransferSize
    self.maxSPDMMessageSize = maxSPDMMessageSize
  }

  public init(parsing bytes: [UInt8]) throws(WireError) {
    var reader = ByteReader(bytes)
    let header = try SPDMHeader.parse(&reader, expecting: Self.code.rawValue, "CAPABILITIES")
    version = header.version
    try reader.skip(1, "Reserved")
    ctExponent = try reader.readU8("CTExponent")
    try reader.skip(2, "Reserved")
    flags = ResponderCapabilities(rawValue: try reader.readU32("Flags"))
    dataTransferSize = 0
    maxSPDMMessageSize = 0
    if version >= .v12 {
      dataTransferSize = try reader.readU32("DataTransferSize")
      maxSPDMMessageSize = try reader.readU32("MaxSPDMmsgSize")
    }
    try reader.expectEnd("CAPABILITIES")
  }

  public func encode() -> [UInt8] {
    var writer = ByteWriter()
    SPDMHeader(version: version, code: Self.code.rawValue).encode(into: &writer)
    writer.append(UInt8(0))
    writer.append(ctExponent)
    writer.append(UInt16(0))
    writer.append(flags.rawValue)
    if version >= .v12 {
      writer.append(dataTransferSize)
      writer.append(maxSPDMMessageSize)
    }
    return writer.bytes
  }
}
