import CoveWire
import SPDM
import Testing

@Suite("KEY_EXCHANGE, FINISH, secured-message opaque data")
struct SessionTests {
  // General opaque data table with one DSP0277 supported-version list {1.1}:
  static let supportedOpaque: [UInt8] =
    hex("01 00 00 00")  // TotalElements 1, Reserved[3]
    + hex("00 00 05 00")  // ID 0 (DMTF), VendorLen 0, OpaqueElementDataLen 5
    + hex("01 01 01 00 11")  // SMDataVersion 1, SMDataID 1 (supported list), VersionCount 1, 0x1100
    + hex("00 00 00")  // AlignPadding to a 4-byte element (9 -> 12)
  // … and the Responder's version selection {1.1}:
  static let selectedOpaque: [UInt8] =
    hex("01 00 00 00")  // TotalElements 1
    + hex("00 00 04 00")  // ID 0, VendorLen 0, OpaqueElementDataLen 4
    + hex("01 00 00 11")  // SMDataVersion 1, SMDataID 0 (selection), SelectedVersion 0x1100

  @Test func opaqueData() throws {
    #expect(SecuredMessageOpaqueData.encode([.supportedVersions([0x1100])]) == Self.supportedOpaque)
    #expect(SecuredMessageOpaqueData.encode([.selectedVersion(0x1100)]) == Self.selectedOpaque)
    #expect(try SecuredMessageOpaqueData.parse(Self.supportedOpaque) == [.supportedVersions([0x1100])])
    #expect(try SecuredMessageOpaqueData.parse(Self.selectedOpaque) == [.selectedVersion(0x1100)])
    let mixed: [SecuredMessageVersionElement] = [
      .supportedVersions([0x1000, 0x1100, 0x1200]),
      .other(registryID: 3, vendorID: hex("01 00"), data: hex("AA")),
    ]
    #expect(try SecuredMessageOpaqueData.parse(SecuredMessageOpaqueData.encode(mixed)) == mixed)
    for length in 0..<Self.supportedOpaque.count {
      expectWireError(.truncated, "prefix \(length)") { () throws(WireError) in
        _ = try SecuredMessageOpaqueData.parse(Array(Self.supportedOpaque.prefix(length)))
      }
    }
    expectWireError(.trailingBytes, at: 12) { () throws(WireError) in
      _ = try SecuredMessageOpaqueData.parse(Self.selectedOpaque + [0])
    }
    // A selection element with a 3-byte body is malformed.
    expectWireError(.truncated, at: 10) { () throws(WireError) in
      _ = try SecuredMessageOpaqueData.parse(hex("01 00 00 00 00 00 03 00 01 00 00 00"))
    }
  }

  static let keyExchange = KeyExchangeRequest(
    version: .v12, measurementSummaryHashType: .none, slotID: 0, requesterSessionID: 0xFFFD,
    sessionPolicy: 0x01,
    randomData: repeated(0x10, 32), exchangeData: repeated(0x22, 64), opaqueData: supportedOpaque)

  @Test func keyExchangeRequest() throws {
    // KEY_EXCHANGE table, field by field (ECDHE P-256: D = 64).
    let expected =
      hex("12 E4 00 00")  // Param1 HashType none, Param2 SlotID 0
      + hex("FD FF")  // ReqSessionID
      + hex("01 00")  // SessionPolicy (TerminationPolicy), Reserved
      + repeated(0x10, 32)  // RandomData
      + repeated(0x22, 64)  // ExchangeData
      + hex("10 00")  // OpaqueDataLength 16
      + Self.supportedOpaque
    #expect(Self.keyExchange.encode() == expected)
    #expect(try KeyExchangeRequest(parsing: expected, exchangeDataSize: 64) == Self.keyExchange)
    checkStandardRejections(expected) { bytes throws(WireError) in
      _ = try KeyExchangeRequest(parsing: bytes, exchangeDataSize: 64)
    }
    var long = expected
    long[104] = 0x01
    long[105] = 0x04
    expectWireError(.lengthOutOfRange, at: 104) { () throws(WireError) in
      _ = try KeyExchangeRequest(parsing: long, exchangeDataSize: 64)
    }
  }

  @Test func keyExchangeResponse() throws {
    let message = KeyExchangeResponse(
      version: .v12, heartbeatPeriod: 0x0A, responderSessionID: 0xFFFE, mutAuthRequested: 0,
      requesterSlotIDParam: 0,
      randomData: repeated(0x30, 32), exchangeData: repeated(0x33, 64),
      measurementSummaryHash: repeated(0x5A, 32),
      opaqueData: Self.selectedOpaque, signature: repeated(0x5B, 64), responderVerifyData: repeated(0x7D, 32))
    // KEY_EXCHANGE_RSP table, field by field (H = 32, D = 64, S = 64).
    let beforeSignature =
      hex("12 64 0A 00")  // Param1 HeartbeatPeriod 10, Param2 reserved
      + hex("FE FF")  // RspSessionID
      + hex("00")  // MutAuthRequested
      + hex("00")  // ReqSlotIDParam
      + repeated(0x30, 32)  // RandomData
      + repeated(0x33, 64)  // ExchangeData
      + repeated(0x5A, 32)  // MeasurementSummaryHash
      + hex("0C 00")  // OpaqueDataLength 12
      + Self.selectedOpaque
    // Signature, then ResponderVerifyData.
    let expected = beforeSignature + repeated(0x5B, 64) + repeated(0x7D, 32)
    #expect(message.encode() == expected)
    var unsigned = message
    unsigned.signature = []
    unsigned.responderVerifyData = []
    #expect(unsigned.encode() == beforeSignature)
    func parse(_ bytes: [UInt8], verify: Bool = true) throws(WireError) -> KeyExchangeResponse {
      try KeyExchangeResponse(
        parsing: bytes, exchangeDataSize: 64, hashSize: 32, signatureSize: 64,
        measurementSummaryHashPresent: true,
        responderVerifyDataPresent: verify)
    }
    #expect(try parse(expected) == message)
    var inTheClear = message
    inTheClear.responderVerifyData = []
    #expect(try parse(inTheClear.encode(), verify: false) == inTheClear)
    checkStandardRejections(expected) { bytes throws(WireError) in _ = try parse(bytes) }
  }

  @Test func finish() throws {
    // FINISH table: no signature (Param1 bit 0 clear), RequesterVerifyData[32].
    let plain = FinishRequest(version: .v12, requesterVerifyData: repeated(0x7E, 32))
    let expected = hex("12 E5 00 00") + repeated(0x7E, 32)
    #expect(plain.encode() == expected)
    #expect(try FinishRequest(parsing: expected, hashSize: 32, signatureSize: nil) == plain)
    checkStandardRejections(expected) { bytes throws(WireError) in
      _ = try FinishRequest(parsing: bytes, hashSize: 32, signatureSize: 64)
    }
    // Mutual authentication: Param1 bit 0, Param2 ReqSlotID 1, Signature[64] then verify data.
    let signed = FinishRequest(
      version: .v12, signatureIncluded: true, requesterSlotID: 1, signature: repeated(0x5B, 64),
      requesterVerifyData: repeated(0x7E, 32))
    let expectedSigned = hex("12 E5 01 01") + repeated(0x5B, 64) + repeated(0x7E, 32)
    #expect(signed.encode() == expectedSigned)
    #expect(try FinishRequest(parsing: expectedSigned, hashSize: 32, signatureSize: 64) == signed)
    checkStandardRejections(expectedSigned) { bytes throws(WireError) in
      _ = try FinishRequest(parsing: bytes, hashSize: 32, signatureSize: 64)
    }
    expectWireError(.invalidValue, at: 2) { () throws(WireError) in
      _ = try FinishRequest(parsing: expectedSigned, hashSize: 32, signatureSize: nil)
    }
  }

  @Test func finishResponse() throws {
    // FINISH_RSP table: ResponderVerifyData only when the handshake is in the clear.
    let clear = FinishResponse(version: .v12, responderVerifyData: repeated(0x7F, 32))
    let expected = hex("12 65 00 00") + repeated(0x7F, 32)
    #expect(clear.encode() == expected)
    #expect(try FinishResponse(parsing: expected, verifyDataSize: 32) == clear)
    checkStandardRejections(expected) { bytes throws(WireError) in
      _ = try FinishResponse(parsing: bytes, verifyDataSize: 32)
    }
    #expect(FinishResponse(version: .v12).encode() == hex("12 65 00 00"))
    #expect(
      try FinishResponse(parsing: hex("12 65 00 00"), verifyDataSize: nil) == FinishResponse(version: .v12))
    checkStandardRejections(hex("12 65 00 00")) { bytes throws(WireError) in
      _ = try FinishResponse(parsing: bytes, verifyDataSize: nil)
    }
  }
}
