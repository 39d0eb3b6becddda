public import CoveWire

/// GET_MEASUREMENTS (DSP0274 "GET_MEASUREMENTS request message format" table): Param1 attributes
/// (bit 0 SignatureRequested, bit 1 RawBitStreamRequested), Param2 MeasurementOperation (0 = count,
/// 0xFF = all, else an index); Nonce[32] and SlotIDParam u8 (1.1+) only when a signature is requested;
/// RequesterContext[8] always in 1.3.
public struct GetMeasurementsRequest: Hashable, Sendable {
  public static let code = SPDMRequestCode.getMeasurements
  /// MeasurementOperation 0: return only the number of indices.
  public static let operationTotalCount: UInt8 = 0
  /// MeasurementOperation 0xFF: return all measurement blocks.
  public static let operationAll: UInt8 = 0xFF

  public var version: SPDMVersion
  public var signatureRequested: Bool
  public var rawBitStreamRequested: Bool
  public var operation: UInt8
  /// Present iff a signature is requested.
  public var nonce: [UInt8]?
  /// SlotIDParam bits 3:0; on the wire only when a signature is requested (and version ≥ 1.1).
  public var slotID: UInt8
  /// 8 bytes iff version ≥ 1.3.
  public var requesterContext: [UInt8]

  public init(
    version: SPDMVersion, signatureRequested: Bool, rawBitStreamRequested: Bool = false, operation: UInt8,
    nonce: [UInt8]? = nil, slotID: UInt8 = 0, requesterContext: [UInt8] = []
  ) {
    self.version = version
    self.signatureRequested = signatureRequested
    self.rawBitStreamRequested = rawBitStreamRequested
    self.operation = operation
    self.nonce = nonce
    self.slotID = slotID
    self.requesterContext = requesterContext
  }

  public init(parsing bytes: [UInt8]) throws(WireError) {
    var reader = ByteReader(bytes)
    let header = try SPDMHeader.parse(&reader, expecting: Self.code.rawValue, "GET_MEASUREMENTS")
    version = header.version
    signatureRequested = header.param1 & 0x01 != 0
    rawBitStreamRequested = header.param1 & 0x02 != 0
    operation = header.param2
    nonce = nil
    slotID = 0
    if signatureRequested {
      nonce = try reader.readBytes(spdmNonceSize, "Nonce")
      if version >= .v11 { slotID = try reader.readU8("SlotIDParam") & 0x0F }
    }
    requesterContext =
      version >= .v13 ? try reader.readBytes(spdmRequesterContextSize, "RequesterContext") : []
    try reader.expectEnd("GET_MEASUREMENTS")
  }

  public func encode() -> [UInt8] {
    var writer = ByteWriter()
    let attributes: UInt8 = (signatureRequested ? 0x01 : 0) | (rawBitStreamRequested ? 0x02 : 0)
    SPDMHeader(version: version, code: Self.code.rawValue, param1: attributes, param2: operation)
      .encode(into: &writer)
    if signatureRequested {
      writer.append(contentsOf: nonce ?? [])
      if version >= .v11 { writer.append(slotID & 0x0F) }
    }
    writer.append(contentsOf: requesterContext)
    return writer.bytes
  }
}

/// MEASUREMENTS (DSP0274 "Successful MEASUREMENTS response message format" table): Param1
/// TotalNumberOfMeasurementIndices (operation 0 only, else reserved), Param2 bits 3:0 SlotID, bits 5:4
/// ContentChanged; NumberOfBlocks u8, MeasurementRecordLength u24, MeasurementRecord, Nonce[32],
/// OpaqueDataLength u16, OpaqueData, RequesterContext[8] (1.3), Signature[S] (only when requested).
public struct MeasurementsResponse: Hashable, Sendable {
  public static let code = SPDMResponseCode.measurements
  public var version: SPDMVersion
  public var totalMeasurementIndices: UInt8
  public var slotID: UInt8
  /// Param2 bits 5:4: 00 no detection, 01 changed, 10 unchanged.
  public var contentChanged: UInt8
  public var blocks: [MeasurementBlock]
  public var nonce: [UInt8]
  public var opaqueData: [UInt8]
  public var requesterContext: [UInt8]
  /// Empty for an unsigned response.
  public var signature: [UInt8]

  public init(
    version: SPDMVersion, totalMeasurementIndices: UInt8 = 0, slotID: UInt8 = 0, contentChanged: UInt8 = 0,
    blocks: [MeasurementBlock], nonce: [UInt8], opaqueData: [UInt8] = [], requesterContext: [UInt8] = [],
    signature: [UInt8] = []
  ) {
    self.version = version
    self.totalMeasurementIndices = totalMeasurementIndices
    self.slotID = slotID
    self.contentChanged = contentChanged
    self.blocks = blocks
    self.nonce = nonce
    self.opaqueData = opaqueData
    self.requesterContext = requesterContext
    self.signature = signature
  }

  /// `signatureSize` nil means the request did not ask for a signature.
  public init(parsing bytes: [UInt8], signatureSize: Int?) throws(WireError) {
    var reader = ByteReader(bytes)
    let header = try SPDMHeader.parse(&reader, expecting: Self.code.rawValue, "MEASUREMENTS")
    version = header.version
    totalMeasurementIndices = header.param1
    slotID = header.param2 & 0x0F
    contentChanged = (header.param2 >> 4) & 0x3
    let count = Int(try reader.readU8("NumberOfBlocks"))
    // MeasurementRecordLength is a u24 (at most 2^24 - 1, DSP0274 MEASUREMENTS table); a record longer
    // than the bytes received is a truncated message, and readBytes checks that before copying.
    let recordLength = Int(try reader.readU24("MeasurementRecordLength"))
    let record = try reader.readBytes(recordLength, "MeasurementRecord")
    blocks = try MeasurementBlock.parseRecord(record, count: count, baseOffset: 8)
    nonce = try reader.readBytes(spdmNonceSize, "Nonce")
    opaqueData = try reader.readOpaqueData()
    requesterContext =
      version >= .v13 ? try reader.readBytes(spdmRequesterContextSize, "RequesterContext") : []
    signature = try reader.readBytes(signatureSize ?? 0, "Signature")
    try reader.expectEnd("MEASUREMENTS")
  }

  /// The whole message; with `signature: []` exactly the signed bytes (the L1/L2 transcript tail).
  public func encode() -> [UInt8] {
    let record = MeasurementBlock.encodeRecord(blocks)
    var writer = ByteWriter(capacity: 64 + record.count)
    SPDMHeader(
      version: version, code: Self.code.rawValue, param1: totalMeasurementIndices,
      param2: (slotID & 0x0F) | (contentChanged & 0x3) << 4
    ).encode(into: &writer)
    writer.append(UInt8(blocks.count))
    writer.appendU24(UInt32(record.count))
    writer.append(contentsOf: record)
    writer.append(contentsOf: nonce)
    writer.appendOpaqueData(opaqueData)
    writer.append(contentsOf: requesterContext)
    writer.append(contentsOf: signature)
    return writer.bytes
  }
}

/// DMTFSpecMeasurementValueType bits 6:0 (DSP0274 "DMTF measurement specification format" table).
public struct DMTFMeasurementValueType: RawRepresentable, Hashable, Sendable {
  public var rawValue: UInt8
  public init(rawValue: UInt8) { self.rawValue = rawValue }
  public static let immutableROM = DMTFMeasurementValueType(rawValue: 0)
  public static let mutableFirmware = DMTFMeasurementValueType(rawValue: 1)
  public static let hardwareConfiguration = DMTFMeasurementValueType(rawValue: 2)
  public static let firmwareConfiguration = DMTFMeasurementValueType(rawValue: 3)
  public static let freeformManifest = DMTFMeasurementValueType(rawValue: 4)
  public static let structuredDebug = DMTFMeasurementValueType(rawValue: 5)
  public static let mutableFirmwareVersion = DMTFMeasurementValueType(rawValue: 6)
  public static let mutableFirmwareSVN = DMTFMeasurementValueType(rawValue: 7)
  public static let hashExtended = DMTFMeasurementValueType(rawValue: 8)
  public static let informational = DMTFMeasurementValueType(rawValue: 9)
  public static let structuredManifest = DMTFMeasurementValueType(rawValue: 0x0A)
}

extension DMTFMeasurementValueType: CustomStringConvertible {
  /// The specification's name for the type, or its number when unknown.
  public var description: String {
    switch self {
    case .immutableROM: "immutable ROM"
    case .mutableFirmware: "mutable firmware"
    case .hardwareConfiguration: "hardware configuration"
    case .firmwareConfiguration: "firmware configuration"
    case .freeformManifest: "freeform manifest"
    case .structuredDebug: "structured debug"
    case .mutableFirmwareVersion: "firmware version"
    case .mutableFirmwareSVN: "firmware SVN"
    case .hashExtended: "hash-extended"
    case .informational: "informational"
    case .structuredManifest: "structured manifest"
    default: "type 0x\(String(rawValue, radix: 16))"
    }
  }
}

/// A DMTF-format measurement (DSP0274 "DMTF measurement specification format" table):
/// DMTFSpecMeasurementValueType u8 (bit 7 = raw bit stream, else digest), DMTFSpecMeasurementValueSize
/// u16, DMTFSpecMeasurementValue.
public struct DMTFMeasurement: Hashable, Sendable {
  public var valueType: DMTFMeasurementValueType
  public var isRawBitStream: Bool
  public var value: [UInt8]

  public init(valueType: DMTFMeasurementValueType, isRawBitStream: Bool, value: [UInt8]) {
    self.valueType = valueType
    self.isRawBitStream = isRawBitStream
    self.value = value
  }

  public init(parsing bytes: [UInt8], baseOffset: Int = 0) throws(WireError) {
    var reader = ByteReader(bytes, baseOffset: baseOffset)
    let type = try reader.readU8("DMTFSpecMeasurementValueType")
    valueType = DMTFMeasurementValueType(rawValue: type & 0x7F)
    isRawBitStream = type & 0x80 != 0
    let sizeOffset = reader.offset
    let size = Int(try reader.readU16("DMTFSpecMeasurementValueSize"))
    // The value must fill the block's Measurement exactly: MeasurementSize = 3 + ValueSize.
    guard size == reader.remaining else {
      throw WireError(.lengthOutOfRange, at: sizeOffset, field: "DMTFSpecMeasurementValueSize")
    }
    value = try reader.readBytes(size, "DMTFSpecMeasurementValue")
  }

  public func encode() -> [UInt8] {
    precondition(value.count <= Int(UInt16.max) - 3, "DMTFSpecMeasurementValueSize is a u16")
    var writer = ByteWriter(capacity: 3 + value.count)
    writer.append(valueType.rawValue & 0x7F | (isRawBitStream ? 0x80 : 0))
    writer.append(UInt16(value.count))
    writer.append(contentsOf: value)
    return writer.bytes
  }
}

/// One measurement block of a MEASUREMENTS record (DSP0274 "Measurement block format" table):
/// Index u8, MeasurementSpecification u8, MeasurementSize u16, Measurement[MeasurementSize].
public struct MeasurementBlock: Hashable, Sendable {
  public var index: UInt8
  public var measurementSpecification: UInt8
  public var measurement: [UInt8]

  public init(index: UInt8, measurementSpecification: UInt8 = 0x01, measurement: [UInt8]) {
    self.index = index
    self.measurementSpecification = measurementSpecification
    self.measurement = measurement
  }

  public init(index: UInt8, dmtf: DMTFMeasurement) {
    self.init(
      index: index, measurementSpecification: MeasurementSpecification.dmtf.rawValue,
      measurement: dmtf.encode())
  }

  /// The measurement decoded in the DMTF format, or nil when MeasurementSpecification is not DMTF
  /// (bit 0) or the measurement is malformed.
  public var dmtf: DMTFMeasurement? {
    guard measurementSpecification == MeasurementSpecification.dmtf.rawValue else { return nil }
    return try? DMTFMeasurement(parsing: measurement)
  }

  /// Parses a MeasurementRecord of exactly `count` blocks that fill it exactly. `baseOffset` is where the
  /// record starts in the enclosing message (8 in MEASUREMENTS), for error offsets.
  public static func parseRecord(
    _ bytes: [UInt8], count: Int, baseOffset: Int = 0
  ) throws(WireError) -> [MeasurementBlock] {
    var reader = ByteReader(bytes, baseOffset: baseOffset)
    var blocks: [MeasurementBlock] = []
    blocks.reserveCapacity(count)
    for _ in 0..<count {
      let index = try reader.readU8("Index")
      let specification = try reader.readU8("MeasurementSpecification")
      let size = Int(try reader.readU16("MeasurementSize"))
      let measurement = try reader.readBytes(size, "Measurement")
      if specification == MeasurementSpecification.dmtf.rawValue {
        // Validate the DMTF structure now so a malformed block is reported with its offset.
        _ = try DMTFMeasurement(parsing: measurement, baseOffset: reader.offset - size)
      }
      blocks.append(
        MeasurementBlock(index: index, measurementSpecification: specification, measurement: measurement))
    }
    // "MeasurementRecordLength" must describe exactly NumberOfBlocks blocks.
    try reader.expectEnd("MeasurementRecord")
    return blocks
  }

  public static func encodeRecord(_ blocks: [MeasurementBlock]) -> [UInt8] {
    var writer = ByteWriter()
    for block in blocks { block.encode(into: &writer) }
    return writer.bytes
  }

  public func encode(into writer: inout ByteWriter) {
    precondition(measurement.count <= Int(UInt16.max), "MeasurementSize is a u16")
    writer.append(index)
    writer.append(measurementSpecification)
    writer.append(UInt16(measurement.count))
    writer.append(contentsOf: measurement)
  }
}
