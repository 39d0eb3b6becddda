import CoveWire

/// LOCK_INTERFACE_REQUEST flags (PCIe 6.x §11.3.8, LOCK_INTERFACE_REQUEST FLAGS); also the layout of
/// TDISP_CAPABILITIES' LOCK_INTERFACE_FLAGS_SUPPORTED.
public struct TDISPLockFlags: OptionSet, Hashable, Sendable {
  public var rawValue: UInt16
  public init(rawValue: UInt16) { self.rawValue = rawValue }
  /// NO_FW_UPDATE: firmware updates are not permitted while locked.
  public static let noFirmwareUpdate = TDISPLockFlags(rawValue: 0x1)
  /// SYSTEM_CACHE_LINE_SIZE: the host uses 128-byte cache lines (clear: 64 bytes).
  public static let systemCacheLineSize = TDISPLockFlags(rawValue: 0x2)
  /// LOCK_MSIX: the MSI-X table and PBA are locked.
  public static let lockMSIX = TDISPLockFlags(rawValue: 0x4)
  /// BIND_P2P: P2P streams may be bound while in RUN.
  public static let bindP2P = TDISPLockFlags(rawValue: 0x8)
  /// ALL_REQUEST_REDIRECT: all ATS-translated requests are redirected to the root port.
  public static let allRequestRedirect = TDISPLockFlags(rawValue: 0x10)
}

/// The LOCK_INTERFACE_REQUEST parameters (PCIe 6.x §11.3.8, Table 11-10 LOCK_INTERFACE_REQUEST, 20 bytes): FLAGS u16,
/// DEFAULT_STREAM_ID u8, reserved u8, MMIO_REPORTING_OFFSET u64, BIND_P2P_ADDRESS_MASK u64.
public struct TDISPLockInterfaceParameters: Hashable, Sendable {
  public static let size = 20

  public var flags: TDISPLockFlags
  /// The selective IDE stream the TDI uses for its own traffic.
  public var defaultStreamID: UInt8
  /// Added (two's complement) to every MMIO address the DEVICE_INTERFACE_REPORT reports.
  public var mmioReportingOffset: UInt64
  public var bindP2PAddressMask: UInt64

  public init(
    flags: TDISPLockFlags, defaultStreamID: UInt8, mmioReportingOffset: UInt64 = 0,
    bindP2PAddressMask: UInt64 = 0
  ) {
    self.flags = flags
    self.defaultStreamID = defaultStreamID
    self.mmioReportingOffset = mmioReportingOffset
    self.bindP2PAddressMask = bindP2PAddressMask
  }

  static func parse(_ reader: inout ByteReader) throws(WireError) -> TDISPLockInterfaceParameters {
    let flags = TDISPLockFlags(rawValue: try reader.readU16("FLAGS"))
    let stream = try reader.readU8("DEFAULT_STREAM_ID")
    try reader.skip(1, "reserved")
    let offset = try reader.readU64("MMIO_REPORTING_OFFSET")
    let mask = try reader.readU64("BIND_P2P_ADDRESS_MASK")
    return TDISPLockInterfaceParameters(
      flags: flags, defaultStreamID: stream, mmioReportingOffset: offset, bindP2PAddressMask: mask)
  }

  func encode(into writer: inout ByteWriter) {
    writer.append(flags.rawValue)
    writer.append(defaultStreamID)
    writer.append(UInt8(0))
    writer.append(mmioReportingOffset)
    writer.append(bindP2PAddressMask)
  }
}

/// TDISP_CAPABILITIES body (PCIe 6.x §11.3.7, Table 11-9 TDISP_CAPABILITIES, 28 bytes): DSM_CAPS u32,
/// REQ_MSGS_SUPPORTED[16] (bit n set = request code 0x80 + n supported), LOCK_INTERFACE_FLAGS_SUPPORTED
/// u16, reserved[3], DEV_ADDR_WIDTH u8, NUM_REQ_THIS u8, NUM_REQ_ALL u8.
public struct TDISPCapabilities: Hashable, Sendable {
  public static let size = 28

  public var dsmCapabilities: UInt32
  /// REQ_MSGS_SUPPORTED, 16 bytes, bit n of the 128-bit little-endian field = request 0x80 + n.
  public var requestMessagesSupported: [UInt8]
  public var lockInterfaceFlagsSupported: TDISPLockFlags
  public var deviceAddressWidth: UInt8
  public var numberOfRequestsThisTDI: UInt8
  public var numberOfRequestsAllTDIs: UInt8

  public init(
    dsmCapabilities: UInt32 = 0, supportedRequests: [TDISPRequestCode],
    lockInterfaceFlagsSupported: TDISPLockFlags,
    deviceAddressWidth: UInt8, numberOfRequestsThisTDI: UInt8 = 1, numberOfRequestsAllTDIs: UInt8 = 1
  ) {
    var bits = [UInt8](repeating: 0, count: 16)
    for code in supportedRequests where code.rawValue >= 0x80 {
      let bit = Int(code.rawValue - 0x80)
      bits[bit / 8] |= 1 << UInt8(bit % 8)
    }
    self.init(
      dsmCapabilities: dsmCapabilities, requestMessagesSupported: bits,
      lockInterfaceFlagsSupported: lockInterfaceFlagsSupported, deviceAddressWidth: deviceAddressWidth,
      numberOfRequestsThisTDI: numberOfRequestsThisTDI, numberOfRequestsAllTDIs: numberOfRequestsAllTDIs)
  }

  public init(
    dsmCapabilities: UInt32, requestMessagesSupported: [UInt8], lockInterfaceFlagsSupported: TDISPLockFlags,
    deviceAddressWidth: UInt8, numberOfRequestsThisTDI: UInt8, numberOfRequestsAllTDIs: UInt8
  ) {
    precondition(requestMessagesSupported.count == 16, "REQ_MSGS_SUPPORTED is 16 bytes")
    self.dsmCapabilities = dsmCapabilities
    self.requestMessagesSupported = requestMessagesSupported
    self.lockInterfaceFlagsSupported = lockInterfaceFlagsSupported
    self.deviceAddressWidth = deviceAddressWidth
    self.numberOfRequestsThisTDI = numberOfRequestsThisTDI
    self.numberOfRequestsAllTDIs = numberOfRequestsAllTDIs
  }

  public func supports(_ code: TDISPRequestCode) -> Bool {
    guard code.rawValue >= 0x80 else { return false }
    let bit = Int(code.rawValue - 0x80)
    return requestMessagesSupported[bit / 8] & 1 << UInt8(bit % 8) != 0
  }

  static func parse(_ reader: inout ByteReader) throws(WireError) -> TDISPCapabilities {
    let dsmCaps = try reader.readU32("DSM_CAPS")
    let supported = try reader.readBytes(16, "REQ_MSGS_SUPPORTED")
    let flags = TDISPLockFlags(rawValue: try reader.readU16("LOCK_INTERFACE_FLAGS_SUPPORTED"))
    try reader.skip(3, "reserved")
    let width = try reader.readU8("DEV_ADDR_WIDTH")
    let this = try reader.readU8("NUM_REQ_THIS")
    let all = try reader.readU8("NUM_REQ_ALL")
    return TDISPCapabilities(
      dsmCapabilities: dsmCaps, requestMessagesSupported: supported, lockInterfaceFlagsSupported: flags,
      deviceAddressWidth: width, numberOfRequestsThisTDI: this, numberOfRequestsAllTDIs: all)
  }

  func encode(into writer: inout ByteWriter) {
    writer.append(dsmCapabilities)
    writer.append(contentsOf: requestMessagesSupported)
    writer.append(lockInterfaceFlagsSupported.rawValue)
    writer.appendZeros(3)
    writer.append(deviceAddressWidth)
    writer.append(numberOfRequestsThisTDI)
    writer.append(numberOfRequestsAllTDIs)
  }
}

/// MMIO_RANGE attributes (PCIe 6.x §11.3.11, Table 11-15 MMIO_RANGE).
public struct TDISPMMIORangeAttributes: OptionSet, Hashable, Sendable {
  public var rawValue: UInt16
  public init(rawValue: UInt16) { self.rawValue = rawValue }
  public static let msixTable = TDISPMMIORangeAttributes(rawValue: 0x1)
  public static let msixPBA = TDISPMMIORangeAttributes(rawValue: 0x2)
  /// IS_NON_TEE_MEM: the range is not TEE memory (served to T=0 accesses).
  public static let isNonTEEMemory = TDISPMMIORangeAttributes(rawValue: 0x4)
  /// IS_MEM_ATTR_UPDATABLE: SET_MMIO_ATTRIBUTE may change IS_NON_TEE_MEM in RUN.
  public static let isMemoryAttributeUpdatable = TDISPMMIORangeAttributes(rawValue: 0x8)
}

/// One MMIO_RANGE (16 bytes): FIRST_PAGE u64 (byte address of the first 4 KiB page), NUMBER_OF_PAGES u32,
/// RANGE_ATTRIBUTES u16, RANGE_ID u16. Also the body of SET_MMIO_ATTRIBUTE_REQUEST.
public struct TDISPMMIORange: Hashable, Sendable {
  public static let size = 16

  public var firstPage: UInt64
  public var numberOfPages: UInt32
  public var attributes: TDISPMMIORangeAttributes
  public var rangeID: UInt16

  public init(firstPage: UInt64, numberOfPages: UInt32, attributes: TDISPMMIORangeAttributes, rangeID: UInt16)
  {
    self.firstPage = firstPage
    self.numberOfPages = numberOfPages
    self.attributes = attributes
    self.rangeID = rangeID
  }

  static func parse(_ reader: inout ByteReader) throws(WireError) -> TDISPMMIORange {
    let first = try reader.readU64("FIRST_PAGE")
    let pages = try reader.readU32("NUMBER_OF_PAGES")
    let attributes = TDISPMMIORangeAttributes(rawValue: try reader.readU16("RANGE_ATTRIBUTES"))
    let id = try reader.readU16("RANGE_ID")
    return TDISPMMIORange(firstPage: first, numberOfPages: pages, attributes: attributes, rangeID: id)
  }

  func encode(into writer: inout ByteWriter) {
    writer.append(firstPage)
    writer.append(numberOfPages)
    writer.append(attributes.rawValue)
    writer.append(rangeID)
  }
}

/// A VDM_REQUEST / VDM_RESPONSE body (PCIe 6.x §11.3.25 Table 11-29 / §11.3.26 Table 11-30): REGISTRY_ID u8 (0 PCI-SIG, 1 CXL),
/// VENDOR_ID_LEN u8, VENDOR_ID, then vendor data to the end of the message.
public struct TDISPVendorDefinedMessage: Hashable, Sendable {
  public var registryID: UInt8
  public var vendorID: [UInt8]
  public var data: [UInt8]

  public init(registryID: UInt8, vendorID: [UInt8], data: [UInt8]) {
    self.registryID = registryID
    self.vendorID = vendorID
    self.data = data
  }

  static func parse(_ reader: inout ByteReader) throws(WireError) -> TDISPVendorDefinedMessage {
    let registry = try reader.readU8("REGISTRY_ID")
    // VENDOR_ID_LEN is a u8, bounded by its width; the bytes must be present.
    let length = Int(try reader.readU8("VENDOR_ID_LEN"))
    let vendorID = try reader.readBytes(length, "VENDOR_ID")
    return TDISPVendorDefinedMessage(registryID: registry, vendorID: vendorID, data: reader.readRest())
  }

  func encode(into writer: inout ByteWriter) {
    precondition(vendorID.count <= Int(UInt8.max), "VENDOR_ID_LEN is a u8")
    writer.append(registryID)
    writer.append(UInt8(vendorID.count))
    writer.append(contentsOf: vendorID)
    writer.append(contentsOf: data)
  }
}

/// TDISP_ERROR body (PCIe 6.x §11.3.24, Table 11-26 TDISP_ERROR): ERROR_CODE u32, ERROR_DATA u32, EXTENDED_ERROR_DATA to
/// the end of the message (present for VENDOR_SPECIFIC_ERROR).
public struct TDISPErrorResponse: Hashable, Sendable, Error {
  public var code: TDISPErrorCode
  public var data: UInt32
  public var extendedData: [UInt8]

  public init(_ code: TDISPErrorCode, data: UInt32 = 0, extendedData: [UInt8] = []) {
    self.code = code
    self.data = data
    self.extendedData = extendedData
  }

  static func parse(_ reader: inout ByteReader) throws(WireError) -> TDISPErrorResponse {
    let code = TDISPErrorCode(rawValue: try reader.readU32("ERROR_CODE"))
    let data = try reader.readU32("ERROR_DATA")
    return TDISPErrorResponse(code, data: data, extendedData: reader.readRest())
  }

  func encode(into writer: inout ByteWriter) {
    writer.append(code.rawValue)
    writer.append(data)
    writer.append(contentsOf: extendedData)
  }
}

/// One DEVICE_INTERFACE_REPORT response's payload (PCIe 6.x §11.3.11, Table 11-14 DEVICE_INTERFACE_REPORT):
/// PORTION_LENGTH u16, REMAINDER_LENGTH u16, then PORTION_LENGTH bytes of the report.
public struct TDISPReportPortion: Hashable, Sendable {
  public var portion: [UInt8]
  /// Bytes of the report after this portion.
  public var remainderLength: UInt16

  public init(portion: [UInt8], remainderLength: UInt16) {
    precondition(portion.count <= Int(UInt16.max), "PORTION_LENGTH is a u16")
    self.portion = portion
    self.remainderLength = remainderLength
  }

  static func parse(_ reader: inout ByteReader) throws(WireError) -> TDISPReportPortion {
    let lengthOffset = reader.offset
    let length = Int(try reader.readU16("PORTION_LENGTH"))
    let remainder = try reader.readU16("REMAINDER_LENGTH")
    // PORTION_LENGTH is a u16 and the portion must also fit in one TDISP message (§6.31.3 carriage).
    let portion = try reader.readBytes(
      length, cap: TDISPLimits.maximumMessageSize - TDISPMessageHeader.size - 4, "REPORT_BYTES",
      lengthOffset: lengthOffset)
    return TDISPReportPortion(portion: portion, remainderLength: remainder)
  }

  func encode(into writer: inout ByteWriter) {
    writer.append(UInt16(portion.count))
    writer.append(remainderLength)
    writer.append(contentsOf: portion)
  }
}
