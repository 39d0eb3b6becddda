public import CoveWire

/// INTERFACE_INFO bits of the device interface report (PCIe 6.x §11.3.11, Table 11-15 "TDI Report Structure").
public struct TDISPInterfaceInfo: OptionSet, Hashable, Sendable {
  public var rawValue: UInt16
  public init(rawValue: UInt16) { self.rawValue = rawValue }
  /// Firmware updates are not permitted while the TDI is in CONFIG_LOCKED or RUN.
  public static let noFirmwareUpdateWhileLocked = TDISPInterfaceInfo(rawValue: 0x1)
  public static let dmaWithoutPASID = TDISPInterfaceInfo(rawValue: 0x2)
  public static let dmaWithPASID = TDISPInterfaceInfo(rawValue: 0x4)
  public static let atsSupported = TDISPInterfaceInfo(rawValue: 0x8)
  public static let prsSupported = TDISPInterfaceInfo(rawValue: 0x10)
}

/// The device interface report the TSM reads in portions with GET_DEVICE_INTERFACE_REPORT (PCIe 6.x §11.3.11,
/// Table 11-15 "TDI Report Structure"): INTERFACE_INFO u16, reserved u16, MSI_X_MESSAGE_CONTROL u16, LNR_CONTROL u16,
/// TPH_CONTROL u32, MMIO_RANGE_COUNT u32, MMIO_RANGE[count] (16 bytes each), DEVICE_SPECIFIC_INFO_LEN u32,
/// DEVICE_SPECIFIC_INFO.
public struct TDISPDeviceInterfaceReport: Hashable, Sendable {
  /// Cove caps the whole report at 65535 bytes so every byte has a u16 OFFSET in
  /// GET_DEVICE_INTERFACE_REPORT and the first response's u16 REMAINDER_LENGTH can describe the rest
  /// (§11.3.10 GET_DEVICE_INTERFACE_REPORT / §11.3.11 DEVICE_INTERFACE_REPORT).
  public static let maximumSize = Int(UInt16.max)
  /// Bytes before the ranges (16) plus DEVICE_SPECIFIC_INFO_LEN (4).
  static let fixedSize = 20
  /// MMIO_RANGE_COUNT cap that follows from `maximumSize`: (65535 − 20) / 16 = 4094 ranges.
  public static let maximumRangeCount = (maximumSize - fixedSize) / TDISPMMIORange.size

  public var interfaceInfo: TDISPInterfaceInfo
  public var msixMessageControl: UInt16
  public var lnrControl: UInt16
  public var tphControl: UInt32
  public var mmioRanges: [TDISPMMIORange]
  public var deviceSpecificInfo: [UInt8]

  public init(
    interfaceInfo: TDISPInterfaceInfo, msixMessageControl: UInt16 = 0, lnrControl: UInt16 = 0,
    tphControl: UInt32 = 0, mmioRanges: [TDISPMMIORange], deviceSpecificInfo: [UInt8] = []
  ) {
    self.interfaceInfo = interfaceInfo
    self.msixMessageControl = msixMessageControl
    self.lnrControl = lnrControl
    self.tphControl = tphControl
    self.mmioRanges = mmioRanges
    self.deviceSpecificInfo = deviceSpecificInfo
  }

  public var encodedSize: Int {
    Self.fixedSize + mmioRanges.count * TDISPMMIORange.size + deviceSpecificInfo.count
  }

  public init(parsing bytes: [UInt8]) throws(WireError) {
    guard bytes.count <= Self.maximumSize else {
      throw WireError(.lengthOutOfRange, at: 0, field: "device interface report (over 65535 bytes)")
    }
    var reader = ByteReader(bytes)
    interfaceInfo = TDISPInterfaceInfo(rawValue: try reader.readU16("INTERFACE_INFO"))
    try reader.skip(2, "reserved")
    msixMessageControl = try reader.readU16("MSI_X_MESSAGE_CONTROL")
    lnrControl = try reader.readU16("LNR_CONTROL")
    tphControl = try reader.readU32("TPH_CONTROL")
    let countOffset = reader.offset
    let count = try reader.readU32("MMIO_RANGE_COUNT")
    guard count <= UInt32(Self.maximumRangeCount) else {
      throw WireError(.lengthOutOfRange, at: countOffset, field: "MMIO_RANGE_COUNT")
    }
    var ranges: [TDISPMMIORange] = []
    ranges.reserveCapacity(min(Int(count), reader.remaining / TDISPMMIORange.size))
    for _ in 0..<Int(count) { ranges.append(try .parse(&reader)) }
    mmioRanges = ranges
    let infoOffset = reader.offset
    let infoLength = try reader.readU32("DEVICE_SPECIFIC_INFO_LEN")
    guard infoLength <= UInt32(Self.maximumSize - Self.fixedSize) else {
      throw WireError(.lengthOutOfRange, at: infoOffset, field: "DEVICE_SPECIFIC_INFO_LEN")
    }
    deviceSpecificInfo = try reader.readBytes(Int(infoLength), "DEVICE_SPECIFIC_INFO")
    try reader.expectEnd("device interface report")
  }

  public func encode() -> [UInt8] {
    precondition(encodedSize <= Self.maximumSize, "device interface report over 65535 bytes")
    var writer = ByteWriter(capacity: encodedSize)
    writer.append(interfaceInfo.rawValue)
    writer.appendZeros(2)
    writer.append(msixMessageControl)
    writer.append(lnrControl)
    writer.append(tphControl)
    writer.append(UInt32(mmioRanges.count))
    for range in mmioRanges { range.encode(into: &writer) }
    writer.append(UInt32(deviceSpecificInfo.count))
    writer.append(contentsOf: deviceSpecificInfo)
    return writer.bytes
  }
}
