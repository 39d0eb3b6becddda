public import CoveWire

/// The body shared by VENDOR_DEFINED_REQUEST and VENDOR_DEFINED_RESPONSE (DSP0274 "VENDOR_DEFINED_REQUEST
/// request message format" table): StandardID u16, Len u8, VendorID[Len], ReqLength/RespLength u16,
/// VendorDefinedPayload. Param1/Param2 reserved (bit 7 of Param1 is the 1.4 large form, unsupported).
struct VendorDefinedBody: Hashable, Sendable {
  var standardID: UInt16
  var vendorID: [UInt8]
  var payload: [UInt8]

  static func parse(_ reader: inout ByteReader) throws(WireError) -> VendorDefinedBody {
    let standardID = try reader.readU16("StandardID")
    // Len is a u8; the registry table fixes each StandardID's VendorID length (0, 2 or 4 bytes) but the
    // field itself is bounded only by its width, so any u8 value is read.
    let vendorIDLength = Int(try reader.readU8("Len"))
    let vendorID = try reader.readBytes(vendorIDLength, "VendorID")
    // ReqLength / RespLength is a u16: the payload is at most 65535 bytes.
    let payloadLength = Int(try reader.readU16("ReqLength"))
    let payload = try reader.readBytes(payloadLength, "VendorDefinedPayload")
    return VendorDefinedBody(standardID: standardID, vendorID: vendorID, payload: payload)
  }

  func encode(into writer: inout ByteWriter) {
    precondition(vendorID.count <= Int(UInt8.max) && payload.count <= Int(UInt16.max))
    writer.append(standardID)
    writer.append(UInt8(vendorID.count))
    writer.append(contentsOf: vendorID)
    writer.append(UInt16(payload.count))
    writer.append(contentsOf: payload)
  }
}

/// VENDOR_DEFINED_REQUEST (DSP0274 "VENDOR_DEFINED_REQUEST request message format" table). TDISP and
/// IDE_KM use StandardID 3 (PCI-SIG), VendorID 0x0001.
public struct VendorDefinedRequest: Hashable, Sendable {
  public static let code = SPDMRequestCode.vendorDefinedRequest
  /// StandardID for PCI-SIG (DSP0274 "Registry or standards body ID" table).
  public static let standardIDPCISIG: UInt16 = 0x0003
  public var version: SPDMVersion
  public var standardID: UInt16
  public var vendorID: [UInt8]
  public var payload: [UInt8]

  public init(version: SPDMVersion, standardID: UInt16, vendorID: [UInt8], payload: [UInt8]) {
    self.version = version
    self.standardID = standardID
    self.vendorID = vendorID
    self.payload = payload
  }

  public init(parsing bytes: [UInt8]) throws(WireError) {
    var reader = ByteReader(bytes)
    version = try SPDMHeader.parse(&reader, expecting: Self.code.rawValue, "VENDOR_DEFINED_REQUEST").version
    let body = try VendorDefinedBody.parse(&reader)
    try reader.expectEnd("VENDOR_DEFINED_REQUEST")
    standardID = body.standardID
    vendorID = body.vendorID
    payload = body.payload
  }

  public func encode() -> [UInt8] {
    var writer = ByteWriter(capacity: 12 + payload.count)
    SPDMHeader(version: version, code: Self.code.rawValue).encode(into: &writer)
    VendorDefinedBody(standardID: standardID, vendorID: vendorID, payload: payload).encode(into: &writer)
    return writer.bytes
  }
}

/// VENDOR_DEFINED_RESPONSE (DSP0274 "VENDOR_DEFINED_RESPONSE response message format" table): the same
/// body as the request.
public struct VendorDefinedResponse: Hashable, Sendable {
  public static let code = SPDMResponseCode.vendorDefinedResponse
  public var version: SPDMVersion
  public var standardID: UInt16
  public var vendorID: [UInt8]
  public var payload: [UInt8]

  public init(version: SPDMVersion, standardID: UInt16, vendorID: [UInt8], payload: [UInt8]) {
    self.version = version
    self.standardID = standardID
    self.vendorID = vendorID
    self.payload = payload
  }

  public init(parsing bytes: [UInt8]) throws(WireError) {
    var reader = ByteReader(bytes)
    version = try SPDMHeader.parse(&reader, expecting: Self.code.rawValue, "VENDOR_DEFINED_RESPONSE").version
    let body = try VendorDefinedBody.parse(&reader)
    try reader.expectEnd("VENDOR_DEFINED_RESPONSE")
    standardID = body.standardID
    vendorID = body.vendorID
    payload = body.payload
  }

  public func encode() -> [UInt8] {
    var writer = ByteWriter(capacity: 12 + payload.count)
    SPDMHeader(version: version, code: Self.code.rawValue).encode(into: &writer)
    VendorDefinedBody(standardID: standardID, vendorID: vendorID, payload: payload).encode(into: &writer)
    return writer.bytes
  }
}

/// ERROR (DSP0274 "ERROR response message format" table): Param1 ErrorCode, Param2 ErrorData,
/// ExtendedErrorData (0–32 bytes).
public struct ErrorResponse: Hashable, Sendable {
  public static let code = SPDMResponseCode.error
  /// "ExtendedErrorData: Optional extended data" of at most 32 bytes (DSP0274 ERROR table;
  /// libspdm SPDM_EXTENDED_ERROR_DATA_MAX_SIZE).
  public static let maxExtendedDataLength = 32
  public var version: SPDMVersion
  public var errorCode: SPDMErrorCode
  public var errorData: UInt8
  public var extendedData: [UInt8]

  public init(
    version: SPDMVersion, errorCode: SPDMErrorCode, errorData: UInt8 = 0, extendedData: [UInt8] = []
  ) {
    self.version = version
    self.errorCode = errorCode
    self.errorData = errorData
    self.extendedData = extendedData
  }

  public init(parsing bytes: [UInt8]) throws(WireError) {
    var reader = ByteReader(bytes)
    let header = try SPDMHeader.parse(&reader, expecting: Self.code.rawValue, "ERROR")
    version = header.version
    errorCode = SPDMErrorCode(rawValue: header.param1)
    errorData = header.param2
    guard reader.remaining <= Self.maxExtendedDataLength else {
      throw WireError(.lengthOutOfRange, at: reader.offset, field: "ExtendedErrorData")
    }
    extendedData = reader.readRest()
  }

  public func encode() -> [UInt8] {
    [version.rawValue, Self.code.rawValue, errorCode.rawValue, errorData] + extendedData
  }

  /// ResponseNotReady extended data (DSP0274 "ResponseNotReady extended error data" table):
  /// RDTExponent u8, RequestCode u8, Token u8, RDTM u8.
  public struct ResponseNotReady: Hashable, Sendable {
    public var rdtExponent: UInt8
    public var requestCode: SPDMRequestCode
    public var token: UInt8
    public var rdtm: UInt8

    public init(rdtExponent: UInt8, requestCode: SPDMRequestCode, token: UInt8, rdtm: UInt8) {
      self.rdtExponent = rdtExponent
      self.requestCode = requestCode
      self.token = token
      self.rdtm = rdtm
    }

    public var bytes: [UInt8] { [rdtExponent, requestCode.rawValue, token, rdtm] }
  }

  /// An ERROR(ResponseNotReady) with its extended data.
  public init(version: SPDMVersion, responseNotReady: ResponseNotReady) {
    self.init(
      version: version, errorCode: .responseNotReady, errorData: 0, extendedData: responseNotReady.bytes)
  }

  /// The typed extended data of ERROR(ResponseNotReady); nil for other codes or when the 4 bytes are
  /// not exactly present.
  public var responseNotReady: ResponseNotReady? {
    guard errorCode == .responseNotReady, extendedData.count == 4 else { return nil }
    return ResponseNotReady(
      rdtExponent: extendedData[0], requestCode: SPDMRequestCode(rawValue: extendedData[1]),
      token: extendedData[2], rdtm: extendedData[3])
  }
}
