import CoveWire
import TDISP
import Testing

/// Header for INTERFACE_ID with requester ID 0x0110 (bus 1, device 2, function 0), segment 0 not valid.
let tdiID = TDISPInterfaceID(requesterID: 0x0110)
func header(_ type: UInt8, version: UInt8 = 0x10) -> [UInt8] {
  [version, type, 0, 0, 0x10, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
}

@Suite struct TDISPHeaderTests {
  @Test func functionIDLayout() {
    let id = TDISPInterfaceID(requesterID: 0x0110, segment: 0x2A)
    #expect(id.functionID == 0x012A_0110)
    #expect(id.segment == 0x2A)
    #expect(id.requesterID == 0x0110)
    #expect(tdiID.segment == nil)
    // lspci's spelling: segment 4 digits, bus and device 2, function 1.
    #expect(id.description == "002a:01:02.0")
    #expect(TDISPInterfaceID(requesterID: 0x0301).description == "03:00.1")
  }

  @Test func headerRoundTrip() throws {
    let bytes: [UInt8] = [0x10, 0x81, 0, 0, 0x10, 0x01, 0x2A, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]
    let parsed = try TDISPMessageHeader(parsing: bytes)
    #expect(parsed.version == .v10)
    #expect(parsed.messageType == 0x81)
    #expect(parsed.interfaceID == TDISPInterfaceID(requesterID: 0x0110, segment: 0x2A))
    #expect(parsed.encode() == bytes)
  }

  @Test func headerRejectsTruncationAndTrailing() {
    #expect(throws: WireError(.truncated, at: 8, field: "INTERFACE_ID reserved")) {
      try TDISPMessageHeader(parsing: Array(header(0x81).prefix(15)))
    }
    #expect(throws: WireError(.truncated, at: 4, field: "INTERFACE_ID.FUNCTION_ID")) {
      try TDISPMessageHeader(parsing: Array(header(0x81).prefix(7)))
    }
    #expect(throws: WireError(.trailingBytes, at: 16, field: "TDISP message header")) {
      try TDISPMessageHeader(parsing: header(0x81) + [0])
    }
  }

  @Test func codeNames() {
    #expect(TDISPRequestCode.allKnown.count == 11)
    #expect(TDISPRequestCode.lockInterface.responseCode == .lockInterface)
    #expect(TDISPRequestCode(name: "VDM_REQUEST") == .vdm)
    #expect(TDISPErrorCode(name: "INVALID_NONCE")?.rawValue == 0x102)
    #expect(TDISPErrorCode.invalidDeviceConfiguration.rawValue == 0x104)
    #expect(TDISPErrorCode.versionMismatch.rawValue == 0x41)
    #expect(TDISPErrorCode(rawValue: 0x9999).description == "error 0x9999")
  }
}

@Suite struct TDISPRequestCodecTests {
  func roundTrip(_ bytes: [UInt8], _ body: TDISPRequest.Body) throws {
    let request = try TDISPRequest(parsing: bytes)
    #expect(request.body == body)
    #expect(request.interfaceID == tdiID)
    #expect(request.encode() == bytes)
  }

  @Test func noPayloadRequests() throws {
    try roundTrip(header(0x81), .getVersion)
    try roundTrip(header(0x85), .getDeviceInterfaceState)
    try roundTrip(header(0x87), .stopInterface)
  }

  @Test func getCapabilities() throws {
    try roundTrip(header(0x82) + [0x78, 0x56, 0x34, 0x12], .getCapabilities(tsmCapabilities: 0x1234_5678))
  }

  @Test func lockInterface() throws {
    // FLAGS 0x0009 (NO_FW_UPDATE | BIND_P2P), stream 3, rsvd, offset 0x1000_0000_0000_0000, mask 0xFFFF_0000.
    let payload: [UInt8] =
      [0x09, 0x00, 0x03, 0x00]
      + [0, 0, 0, 0, 0, 0, 0, 0x10]
      + [0, 0, 0xFF, 0xFF, 0, 0, 0, 0]
    #expect(payload.count == 20)
    try roundTrip(
      header(0x83) + payload,
      .lockInterface(
        TDISPLockInterfaceParameters(
          flags: [.noFirmwareUpdate, .bindP2P], defaultStreamID: 3,
          mmioReportingOffset: 0x1000_0000_0000_0000,
          bindP2PAddressMask: 0xFFFF_0000)))
    #expect(throws: WireError(.truncated, at: 28, field: "BIND_P2P_ADDRESS_MASK")) {
      try TDISPRequest(parsing: header(0x83) + payload.prefix(19))
    }
    #expect(throws: WireError(.trailingBytes, at: 36, field: "LOCK_INTERFACE_REQUEST")) {
      try TDISPRequest(parsing: header(0x83) + payload + [0])
    }
  }

  @Test func getReport() throws {
    try roundTrip(
      header(0x84) + [0x00, 0x01, 0x40, 0x00], .getDeviceInterfaceReport(offset: 0x100, length: 0x40))
    #expect(throws: WireError(.truncated, at: 18, field: "LENGTH")) {
      try TDISPRequest(parsing: header(0x84) + [0, 1, 0x40])
    }
  }

  @Test func startInterface() throws {
    let nonce = (0..<32).map { UInt8($0) }
    try roundTrip(header(0x86) + nonce, .startInterface(nonce: nonce))
    #expect(throws: WireError(.truncated, at: 16, field: "START_INTERFACE_NONCE")) {
      try TDISPRequest(parsing: header(0x86) + nonce.prefix(31))
    }
  }

  @Test func p2pAndMMIO() throws {
    try roundTrip(header(0x88) + [0x05], .bindP2PStream(streamID: 5))
    try roundTrip(header(0x89) + [0x05], .unbindP2PStream(streamID: 5))
    let range: [UInt8] = [0, 0x10, 0, 0, 0, 0, 0, 0] + [2, 0, 0, 0] + [0x0C, 0] + [7, 0]
    try roundTrip(
      header(0x8A) + range,
      .setMMIOAttribute(
        TDISPMMIORange(
          firstPage: 0x1000, numberOfPages: 2, attributes: [.isNonTEEMemory, .isMemoryAttributeUpdatable],
          rangeID: 7)))
    #expect(throws: WireError(.truncated, at: 16, field: "P2P_STREAM_ID")) {
      try TDISPRequest(parsing: header(0x88))
    }
    #expect(throws: WireError(.trailingBytes, at: 17, field: "UNBIND_P2P_STREAM_REQUEST")) {
      try TDISPRequest(parsing: header(0x89) + [1, 2])
    }
  }

  @Test func vdm() throws {
    try roundTrip(
      header(0x8B) + [0x00, 0x02, 0x86, 0x80, 0xAA, 0xBB],
      .vdm(TDISPVendorDefinedMessage(registryID: 0, vendorID: [0x86, 0x80], data: [0xAA, 0xBB])))
    #expect(throws: WireError(.truncated, at: 18, field: "VENDOR_ID")) {
      try TDISPRequest(parsing: header(0x8B) + [0x00, 0x02, 0x86])
    }
  }

  @Test func unknownRequestSurvives() throws {
    try roundTrip(
      header(0x8C) + [1, 2, 3, 4], .unknown(TDISPRequestCode(rawValue: 0x8C), payload: [1, 2, 3, 4]))
  }

  @Test func rejections() {
    #expect(throws: WireError(.unexpectedMessage, at: 1, field: "MessageType (a response code in a request)"))
    {
      try TDISPRequest(parsing: header(0x01))
    }
    #expect(throws: WireError(.trailingBytes, at: 16, field: "GET_TDISP_VERSION")) {
      try TDISPRequest(parsing: header(0x81) + [0])
    }
    #expect(throws: WireError(.truncated, at: 1, field: "MessageType")) { try TDISPRequest(parsing: [0x10]) }
    #expect(
      throws: WireError(
        .lengthOutOfRange, at: 0, field: "TDISP message (exceeds a PCI-SIG VENDOR_DEFINED payload)")
    ) { try TDISPRequest(parsing: header(0x8B) + [0, 0] + [UInt8](repeating: 0, count: 65535 - 18)) }
  }
}

@Suite struct TDISPResponseCodecTests {
  func roundTrip(_ bytes: [UInt8], _ body: TDISPResponse.Body) throws {
    let response = try TDISPResponse(parsing: bytes)
    #expect(response.body == body)
    #expect(response.encode() == bytes)
  }

  @Test func version() throws {
    try roundTrip(header(0x01) + [0x01, 0x10], .version([.v10]))
    try roundTrip(header(0x01) + [0x00], .version([]))
    #expect(throws: WireError(.truncated, at: 17, field: "VERSION_NUM_ENTRY")) {
      try TDISPResponse(parsing: header(0x01) + [0x02, 0x10])
    }
    #expect(throws: WireError(.trailingBytes, at: 18, field: "TDISP_VERSION")) {
      try TDISPResponse(parsing: header(0x01) + [0x01, 0x10, 0x11])
    }
  }

  @Test func capabilities() throws {
    // REQ_MSGS_SUPPORTED: 0x81–0x87 → bits 1–7 of byte 0 (0xFE); 0x88–0x8B → bits 0–3 of byte 1 (0x0F).
    let body: [UInt8] =
      [0x01, 0, 0, 0]
      + [0xFE, 0x0F] + [UInt8](repeating: 0, count: 14)
      + [0x1F, 0x00] + [0, 0, 0] + [52, 1, 4]
    #expect(body.count == TDISPCapabilities.size)
    let caps = TDISPCapabilities(
      dsmCapabilities: 1, supportedRequests: TDISPRequestCode.allKnown,
      lockInterfaceFlagsSupported: [
        .noFirmwareUpdate, .systemCacheLineSize, .lockMSIX, .bindP2P, .allRequestRedirect,
      ],
      deviceAddressWidth: 52, numberOfRequestsThisTDI: 1, numberOfRequestsAllTDIs: 4)
    try roundTrip(header(0x02) + body, .capabilities(caps))
    #expect(caps.supports(.vdm))
    #expect(!caps.supports(TDISPRequestCode(rawValue: 0x8C)))
    #expect(throws: WireError(.truncated, at: 43, field: "NUM_REQ_ALL")) {
      try TDISPResponse(parsing: header(0x02) + body.prefix(27))
    }
  }

  @Test func lockAndState() throws {
    let nonce = [UInt8](repeating: 0xA5, count: 32)
    try roundTrip(header(0x03) + nonce, .lockInterface(nonce: nonce))
    try roundTrip(header(0x05) + [0x02], .deviceInterfaceState(.run))
    #expect(throws: WireError(.invalidValue, at: 16, field: "TDI_STATE (0–3 in TDISP 1.0)")) {
      try TDISPResponse(parsing: header(0x05) + [0x04])
    }
    for code: UInt8 in [0x06, 0x07, 0x08, 0x09, 0x0A] {
      #expect(try TDISPResponse(parsing: header(code)).code.rawValue == code)
      #expect(throws: WireError.self) { try TDISPResponse(parsing: header(code) + [0]) }
    }
  }

  @Test func reportPortion() throws {
    try roundTrip(
      header(0x04) + [0x03, 0x00, 0x10, 0x00, 0xAA, 0xBB, 0xCC],
      .deviceInterfaceReport(TDISPReportPortion(portion: [0xAA, 0xBB, 0xCC], remainderLength: 0x10)))
    #expect(throws: WireError(.truncated, at: 20, field: "REPORT_BYTES")) {
      try TDISPResponse(parsing: header(0x04) + [0x03, 0x00, 0x00, 0x00, 0xAA])
    }
    #expect(throws: WireError(.lengthOutOfRange, at: 16, field: "REPORT_BYTES")) {
      try TDISPResponse(parsing: header(0x04) + [0xFF, 0xFF, 0x00, 0x00])
    }
  }

  @Test func error() throws {
    try roundTrip(
      header(0x7F) + [0x02, 0x01, 0, 0] + [0, 0, 0, 0],
      .error(TDISPErrorResponse(.invalidNonce)))
    try roundTrip(
      header(0x7F) + [0xFF, 0, 0, 0] + [1, 0, 0, 0] + [0x00, 0x02, 0x86, 0x80, 0x42],
      .error(TDISPErrorResponse(.vendorSpecific, data: 1, extendedData: [0x00, 0x02, 0x86, 0x80, 0x42])))
    #expect(throws: WireError(.truncated, at: 20, field: "ERROR_DATA")) {
      try TDISPResponse(parsing: header(0x7F) + [1, 0, 0, 0, 0])
    }
  }

  @Test func unknownResponseRejected() {
    #expect(throws: WireError(.unexpectedMessage, at: 1, field: "MessageType (not a TDISP 1.0 response)")) {
      try TDISPResponse(parsing: header(0x0C))
    }
    #expect(throws: WireError(.unexpectedMessage, at: 1, field: "MessageType (not a TDISP 1.0 response)")) {
      try TDISPResponse(parsing: header(0x81))
    }
  }
}

@Suite struct TDISPReportTests {
  @Test func reportLayout() throws {
    let bytes: [UInt8] =
      [0x0E, 0x00] + [0, 0] + [0x03, 0x80] + [0, 0] + [0, 0, 0, 0]
      + [2, 0, 0, 0]
      + [0, 0, 0, 0xF0, 0, 0, 0, 0] + [4, 0, 0, 0] + [0x00, 0x00] + [0, 0]
      + [0, 0x40, 0, 0xF0, 0, 0, 0, 0] + [1, 0, 0, 0] + [0x03, 0x00] + [1, 0]
      + [2, 0, 0, 0] + [0xDE, 0xAD]
    let report = TDISPDeviceInterfaceReport(
      interfaceInfo: [.dmaWithoutPASID, .dmaWithPASID, .atsSupported], msixMessageControl: 0x8003,
      mmioRanges: [
        TDISPMMIORange(firstPage: 0xF000_0000, numberOfPages: 4, attributes: [], rangeID: 0),
        TDISPMMIORange(
          firstPage: 0xF000_4000, numberOfPages: 1, attributes: [.msixTable, .msixPBA], rangeID: 1),
      ],
      deviceSpecificInfo: [0xDE, 0xAD])
    #expect(report.encode() == bytes)
    #expect(report.encodedSize == bytes.count)
    #expect(try TDISPDeviceInterfaceReport(parsing: bytes) == report)
    #expect(throws: WireError(.truncated, at: bytes.count - 2, field: "DEVICE_SPECIFIC_INFO")) {
      try TDISPDeviceInterfaceReport(parsing: Array(bytes.dropLast()))
    }
    #expect(throws: WireError(.trailingBytes, at: bytes.count, field: "device interface report")) {
      try TDISPDeviceInterfaceReport(parsing: bytes + [0])
    }
  }

  @Test func rangeCountCapped() {
    #expect(TDISPDeviceInterfaceReport.maximumRangeCount == 4094)
    let bytes: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0] + [0xFF, 0x0F, 0, 0]  // 4095 ranges
    #expect(throws: WireError(.lengthOutOfRange, at: 12, field: "MMIO_RANGE_COUNT")) {
      try TDISPDeviceInterfaceReport(parsing: bytes)
    }
    let truncated: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0] + [1, 0, 0, 0] + [0, 0]
    #expect(throws: WireError(.truncated, at: 16, field: "FIRST_PAGE")) {
      try TDISPDeviceInterfaceReport(parsing: truncated)
    }
    let hugeInfo: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0] + [0, 0, 0, 0] + [0xFF, 0xFF, 0xFF, 0xFF]
    #expect(throws: WireError(.lengthOutOfRange, at: 16, field: "DEVICE_SPECIFIC_INFO_LEN")) {
      try TDISPDeviceInterfaceReport(parsing: hugeInfo)
    }
  }
}
