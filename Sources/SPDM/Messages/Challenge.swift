public import CoveWire

/// MeasurementSummaryHashType, Param2 of CHALLENGE and Param1 of KEY_EXCHANGE (DSP0274 CHALLENGE request
/// table): 0 none, 1 TCB component measurements, 0xFF all measurements.
public struct MeasurementSummaryHashType: RawRepresentable, Hashable, Sendable {
  public var rawValue: UInt8
  public init(rawValue: UInt8) { self.rawValue = rawValue }
  public static let none = MeasurementSummaryHashType(rawValue: 0)
  public static let tcb = MeasurementSummaryHashType(rawValue: 1)
  public static let all = MeasurementSummaryHashType(rawValue: 0xFF)
  /// Whether the response carries a MeasurementSummaryHash field.
  public var summaryHashPresent: Bool { self != .none }
}

/// CHALLENGE (DSP0274 "CHALLENGE request message format" table): Param1 SlotID, Param2
/// MeasurementSummaryHashType, Nonce[32], RequesterContext[8] (1.3).
public struct ChallengeRequest: Hashable, Sendable {
  public static let code = SPDMRequestCode.challenge
  public var version: SPDMVersion
  public var slotID: UInt8
  public var measurementSummaryHashType: MeasurementSummaryHashType
  public var nonce: [UInt8]
  /// Present (8 bytes) iff version ≥ 1.3; empty otherwise.
  public var requesterContext: [UInt8]

  public init(
    version: SPDMVersion, slotID: UInt8, measurementSummaryHashType: MeasurementSummaryHashType,
    nonce: [UInt8], requesterContext: [UInt8] = []
  ) {
    self.version = version
    self.slotID = slotID
    self.measurementSummaryHashType = measurementSummaryHashType
    self.nonce = nonce
    self.requesterContext = requesterContext
  }

  public init(parsing bytes: [UInt8]) throws(WireError) {
    var reader = ByteReader(bytes)
    let header = try SPDMHeader.parse(&reader, expecting: Self.code.rawValue, "CHALLENGE")
    version = header.version
    slotID = header.param1
    measurementSummaryHashType = MeasurementSummaryHashType(rawValue: header.param2)
    nonce = try reader.readBytes(spdmNonceSize, "Nonce")
    requesterContext =
      version >= .v13 ? try reader.readBytes(spdmRequesterContextSize, "RequesterContext") : []
    try reader.expectEnd("CHALLENGE")
  }

  public func encode() -> [UInt8] {
    var writer = ByteWriter()
    SPDMHeader(
      version: version, code: Self.code.rawValue, param1: slotID, param2: measurementSummaryHashType.rawValue
    ).encode(into: &writer)
    writer.append(contentsOf: nonce)
    writer.append(contentsOf: requesterContext)
    return writer.bytes
  }
}

/// CHALLENGE_AUTH (DSP0274 "Successful CHALLENGE_AUTH response message format" table): Param1 bits 3:0
/// SlotID (bit 7 BasicMutAuthReq, deprecated in 1.2, dropped), Param2 SlotMask, CertChainHash[H],
/// Nonce[32], MeasurementSummaryHash[H or 0], OpaqueDataLength u16, OpaqueData, RequesterContext[8] (1.3),
/// Signature[S].
public struct ChallengeAuthResponse: Hashable, Sendable {
  public static let code = SPDMResponseCode.challengeAuth
  public var version: SPDMVersion
  public var slotID: UInt8
  public var slotMask: UInt8
  public var certChainHash: [UInt8]
  public var nonce: [UInt8]
  /// Empty when the request's MeasurementSummaryHashType was 0.
  public var measurementSummaryHash: [UInt8]
  public var opaqueData: [UInt8]
  /// 8 bytes iff version ≥ 1.3.
  public var requesterContext: [UInt8]
  public var signature: [UInt8]

  public init(
    version: SPDMVersion, slotID: UInt8, slotMask: UInt8, certChainHash: [UInt8], nonce: [UInt8],
    measurementSummaryHash: [UInt8] = [], opaqueData: [UInt8] = [], requesterContext: [UInt8] = [],
    signature: [UInt8]
  ) {
    self.version = version
    self.slotID = slotID
    self.slotMask = slotMask
    self.certChainHash = certChainHash
    self.nonce = nonce
    self.measurementSummaryHash = measurementSummaryHash
    self.opaqueData = opaqueData
    self.requesterContext = requesterContext
    self.signature = signature
  }

  public init(
    parsing bytes: [UInt8], hashSize: Int, signatureSize: Int, measurementSummaryHashPresent: Bool
  ) throws(WireError) {
    var reader = ByteReader(bytes)
    let header = try SPDMHeader.parse(&reader, expecting: Self.code.rawValue, "CHALLENGE_AUTH")
    version = header.version
    slotID = header.param1 & 0x0F
    slotMask = header.param2
    certChainHash = try reader.readBytes(hashSize, "CertChainHash")
    nonce = try reader.readBytes(spdmNonceSize, "Nonce")
    measurementSummaryHash = try reader.readBytes(
      measurementSummaryHashPresent ? hashSize : 0, "MeasurementSummaryHash")
    opaqueData = try reader.readOpaqueData()
    requesterContext =
      version >= .v13 ? try reader.readBytes(spdmRequesterContextSize, "RequesterContext") : []
    signature = try reader.readBytes(signatureSize, "Signature")
    try reader.expectEnd("CHALLENGE_AUTH")
  }

  /// The whole message; with `signature: []` exactly the bytes covered by the signature (transcript C).
  public func encode() -> [UInt8] {
    var writer = ByteWriter(capacity: 200)
    SPDMHeader(version: version, code: Self.code.rawValue, param1: slotID & 0x0F, param2: slotMask)
      .encode(into: &writer)
    writer.append(contentsOf: certChainHash)
    writer.append(contentsOf: nonce)
    writer.append(contentsOf: measurementSummaryHash)
    writer.appendOpaqueData(opaqueData)
    writer.append(contentsOf: requesterContext)
    writer.append(contentsOf: signature)
    return writer.bytes
  }
}
