public import CoveWire

/// KEY_EXCHANGE (DSP0274 "KEY_EXCHANGE request message format" table): Param1
/// MeasurementSummaryHashType, Param2 SlotID, ReqSessionID u16, SessionPolicy u8 (1.2), Reserved u8,
/// RandomData[32], ExchangeData[D], OpaqueDataLength u16, OpaqueData.
public struct KeyExchangeRequest: Hashable, Sendable {
  public static let code = SPDMRequestCode.keyExchange
  public var version: SPDMVersion
  public var measurementSummaryHashType: MeasurementSummaryHashType
  public var slotID: UInt8
  public var requesterSessionID: UInt16
  public var sessionPolicy: UInt8
  public var randomData: [UInt8]
  public var exchangeData: [UInt8]
  public var opaqueData: [UInt8]

  public init(
    version: SPDMVersion, measurementSummaryHashType: MeasurementSummaryHashType, slotID: UInt8,
    requesterSessionID: UInt16, sessionPolicy: UInt8 = 0, randomData: [UInt8], exchangeData: [UInt8],
    opaqueData: [UInt8] = []
  ) {
    self.version = version
    self.measurementSummaryHashType = measurementSummaryHashType
    self.slotID = slotID
    self.requesterSessionID = requesterSessionID
    self.sessionPolicy = sessionPolicy
    self.randomData = randomData
    self.exchangeData = exchangeData
    self.opaqueData = opaqueData
  }

  /// `exchangeDataSize` is D for the negotiated DHE group (``DHEGroups/exchangeDataSize``).
  public init(parsing bytes: [UInt8], exchangeDataSize: Int) throws(WireError) {
    var reader = ByteReader(bytes)
    let header = try SPDMHeader.parse(&reader, expecting: Self.code.rawValue, "KEY_EXCHANGE")
    version = header.version
    measurementSummaryHashType = MeasurementSummaryHashType(rawValue: header.param1)
    slotID = header.param2
    requesterSessionID = try reader.readU16("ReqSessionID")
    sessionPolicy = try reader.readU8("SessionPolicy")
    try reader.skip(1, "Reserved")
    randomData = try reader.readBytes(spdmNonceSize, "RandomData")
    exchangeData = try reader.readBytes(exchangeDataSize, "ExchangeData")
    opaqueData = try reader.readOpaqueData()
    try reader.expectEnd("KEY_EXCHANGE")
  }

  public func encode() -> [UInt8] {
    var writer = ByteWriter(capacity: 48 + exchangeData.count + opaqueData.count)
    SPDMHeader(
      version: version, code: Self.code.rawValue, param1: measurementSummaryHashType.rawValue, param2: slotID
    ).encode(into: &writer)
    writer.append(requesterSessionID)
    writer.append(sessionPolicy)
    writer.append(UInt8(0))
    writer.append(contentsOf: randomData)
    writer.append(contentsOf: exchangeData)
    writer.appendOpaqueData(opaqueData)
    return writer.bytes
  }
}

/// KEY_EXCHANGE_RSP (DSP0274 "Successful KEY_EXCHANGE_RSP response message format" table): Param1
/// HeartbeatPeriod, Param2 reserved, RspSessionID u16, MutAuthRequested u8, ReqSlotIDParam u8,
/// RandomData[32], ExchangeData[D], MeasurementSummaryHash[H or 0], OpaqueDataLength u16, OpaqueData,
/// Signature[S], ResponderVerifyData[H] (absent when the handshake is in the clear).
public struct KeyExchangeResponse: Hashable, Sendable {
  public static let code = SPDMResponseCode.keyExchangeRsp
  public var version: SPDMVersion
  public var heartbeatPeriod: UInt8
  public var responderSessionID: UInt16
  /// Bit 0 MUT_AUTH_REQUESTED, bit 1 with ENCAP_REQUEST, bit 2 with GET_DIGESTS.
  public var mutAuthRequested: UInt8
  public var requesterSlotIDParam: UInt8
  public var randomData: [UInt8]
  public var exchangeData: [UInt8]
  public var measurementSummaryHash: [UInt8]
  public var opaqueData: [UInt8]
  public var signature: [UInt8]
  public var responderVerifyData: [UInt8]

  public init(
    version: SPDMVersion, heartbeatPeriod: UInt8 = 0, responderSessionID: UInt16, mutAuthRequested: UInt8 = 0,
    requesterSlotIDParam: UInt8 = 0, randomData: [UInt8], exchangeData: [UInt8],
    measurementSummaryHash: [UInt8] = [], opaqueData: [UInt8] = [], signature: [UInt8],
    responderVerifyData: [UInt8] = []
  ) {
    self.version = version
    self.heartbeatPeriod = heartbeatPeriod
    self.responderSessionID = responderSessionID
    self.mutAuthRequested = mutAuthRequested
    self.requesterSlotIDParam = requesterSlotIDParam
    self.randomData = randomData
    self.exchangeData = exchangeData
    self.measurementSummaryHash = measurementSummaryHash
    self.opaqueData = opaqueData
    self.signature = signature
    self.responderVerifyData = responderVerifyData
  }

  public init(
    parsing bytes: [UInt8], exchangeDataSize: Int, hashSize: Int, signatureSize: Int,
    measurementSummaryHashPresent: Bool, responderVerifyDataPresent: Bool
  ) throws(WireError) {
    var reader = ByteReader(bytes)
    let header = try SPDMHeader.parse(&reader, expecting: Self.code.rawValue, "KEY_EXCHANGE_RSP")
    version = header.version
    heartbeatPeriod = header.param1
    responderSessionID = try reader.readU16("RspSessionID")
    mutAuthRequested = try reader.readU8("MutAuthRequested")
    requesterSlotIDParam = try reader.readU8("ReqSlotIDParam")
    randomData = try reader.readBytes(spdmNonceSize, "RandomData")
    exchangeData = try reader.readBytes(exchangeDataSize, "ExchangeData")
    measurementSummaryHash = try reader.readBytes(
      measurementSummaryHashPresent ? hashSize : 0, "MeasurementSummaryHash")
    opaqueData = try reader.readOpaqueData()
    signature = try reader.readBytes(signatureSize, "Signature")
    responderVerifyData = try reader.readBytes(
      responderVerifyDataPresent ? hashSize : 0, "ResponderVerifyData")
    try reader.expectEnd("KEY_EXCHANGE_RSP")
  }

  /// The whole message. With `signature: []` and `responderVerifyData: []` it is exactly the bytes that
  /// precede the signature (what TH1 for the signature covers).
  public func encode() -> [UInt8] {
    var writer = ByteWriter(capacity: 200 + exchangeData.count + opaqueData.count)
    SPDMHeader(version: version, code: Self.code.rawValue, param1: heartbeatPeriod).encode(into: &writer)
    writer.append(responderSessionID)
    writer.append(mutAuthRequested)
    writer.append(requesterSlotIDParam)
    writer.append(contentsOf: randomData)
    writer.append(contentsOf: exchangeData)
    writer.append(contentsOf: measurementSummaryHash)
    writer.appendOpaqueData(opaqueData)
    writer.append(contentsOf: signature)
    writer.append(contentsOf: responderVerifyData)
    return writer.bytes
  }
}

/// FINISH (DSP0274 "FINISH request message format" table, 1.2/1.3): Param1 bit 0 SignatureIncluded,
/// Param2 ReqSlotID, Signature[S] (only with mutual authentication), RequesterVerifyData[H].
public struct FinishRequest: Hashable, Sendable {
  public static let code = SPDMRequestCode.finish
  public var version: SPDMVersion
  public var signatureIncluded: Bool
  public var requesterSlotID: UInt8
  public var signature: [UInt8]
  public var requesterVerifyData: [UInt8]

  public init(
    version: SPDMVersion, signatureIncluded: Bool = false, requesterSlotID: UInt8 = 0,
    signature: [UInt8] = [],
    requesterVerifyData: [UInt8]
  ) {
    self.version = version
    self.signatureIncluded = signatureIncluded
    self.requesterSlotID = requesterSlotID
    self.signature = signature
    self.requesterVerifyData = requesterVerifyData
  }

  /// `signatureSize` is S for the requester's algorithm, nil if mutual authentication was not negotiated;
  /// a message that sets SignatureIncluded then is rejected (invalid value at Param1).
  public init(parsing bytes: [UInt8], hashSize: Int, signatureSize: Int?) throws(WireError) {
    var reader = ByteReader(bytes)
    let header = try SPDMHeader.parse(&reader, expecting: Self.code.rawValue, "FINISH")
    version = header.version
    signatureIncluded = header.param1 & 0x01 != 0
    requesterSlotID = header.param2
    if signatureIncluded {
      guard let signatureSize else {
        throw WireError(.invalidValue, at: 2, field: "Param1.SignatureIncluded")
      }
      signature = try reader.readBytes(signatureSize, "Signature")
    } else {
      signature = []
    }
    requesterVerifyData = try reader.readBytes(hashSize, "RequesterVerifyData")
    try reader.expectEnd("FINISH")
  }

  /// With `signature: []` and `requesterVerifyData: []`, exactly the bytes that precede the signature.
  public func encode() -> [UInt8] {
    var writer = ByteWriter()
    SPDMHeader(
      version: version, code: Self.code.rawValue, param1: signatureIncluded ? 0x01 : 0,
      param2: requesterSlotID
    ).encode(into: &writer)
    writer.append(contentsOf: signature)
    writer.append(contentsOf: requesterVerifyData)
    return writer.bytes
  }
}

/// FINISH_RSP (DSP0274 "Successful FINISH_RSP response message format" table): ResponderVerifyData[H],
/// present only when the handshake is in the clear (HANDSHAKE_IN_THE_CLEAR_CAP on both sides).
public struct FinishResponse: Hashable, Sendable {
  public static let code = SPDMResponseCode.finishRsp
  public var version: SPDMVersion
  public var responderVerifyData: [UInt8]

  public init(version: SPDMVersion, responderVerifyData: [UInt8] = []) {
    self.version = version
    self.responderVerifyData = responderVerifyData
  }

  /// `verifyDataSize` nil when the handshake is encrypted (no verify data on the wire).
  public init(parsing bytes: [UInt8], verifyDataSize: Int?) throws(WireError) {
    var reader = ByteReader(bytes)
    version = try SPDMHeader.parse(&reader, expecting: Self.code.rawValue, "FINISH_RSP").version
    responderVerifyData = try reader.readBytes(verifyDataSize ?? 0, "ResponderVerifyData")
    try reader.expectEnd("FINISH_RSP")
  }

  public func encode() -> [UInt8] { [version.rawValue, Self.code.rawValue, 0, 0] + responderVerifyData }
}
