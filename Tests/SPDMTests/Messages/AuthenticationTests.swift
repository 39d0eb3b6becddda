import CoveWire
import SPDM
import Testing

@Suite("CHALLENGE, MEASUREMENTS, certificate chains")
struct AuthenticationTests {
  static let nonce = (UInt8(1)...32).map { $0 }

  @Test func challenge() throws {
    // CHALLENGE table: Param1 SlotID 0, Param2 HashType 0xFF (all), Nonce[32].
    let message = ChallengeRequest(
      version: .v12, slotID: 0, measurementSummaryHashType: .all, nonce: Self.nonce)
    let expected = hex("12 83 00 FF") + Self.nonce
    #expect(message.encode() == expected)
    #expect(try ChallengeRequest(parsing: expected) == message)
    checkStandardRejections(expected) { bytes throws(WireError) in _ = try ChallengeRequest(parsing: bytes) }
    // 1.3 appends RequesterContext[8].
    let v13 = ChallengeRequest(
      version: .v13, slotID: 0, measurementSummaryHashType: .none, nonce: Self.nonce,
      requesterContext: repeated(0xC7, 8))
    let expected13 = hex("13 83 00 00") + Self.nonce + repeated(0xC7, 8)
    #expect(v13.encode() == expected13)
    #expect(try ChallengeRequest(parsing: expected13) == v13)
    checkStandardRejections(expected13) { bytes throws(WireError) in _ = try ChallengeRequest(parsing: bytes)
    }
  }

  @Test func challengeAuth() throws {
    let message = ChallengeAuthResponse(
      version: .v13, slotID: 0, slotMask: 0x01, certChainHash: repeated(0xC0, 32), nonce: repeated(0x4E, 32),
      measurementSummaryHash: repeated(0x5A, 32), opaqueData: hex("AA BB"),
      requesterContext: repeated(0xC7, 8),
      signature: repeated(0x5B, 64))
    // CHALLENGE_AUTH table (1.3), field by field.
    let unsigned =
      hex("13 03 00 01")  // Param1 SlotID 0, Param2 SlotMask 0x01
      + repeated(0xC0, 32)  // CertChainHash[H = 32]
      + repeated(0x4E, 32)  // Nonce
      + repeated(0x5A, 32)  // MeasurementSummaryHash (HashType != 0)
      + hex("02 00 AA BB")  // OpaqueDataLength 2, OpaqueData
      + repeated(0xC7, 8)  // RequesterContext (1.3)
    let expected = unsigned + repeated(0x5B, 64)  // Signature[S = 64]
    #expect(message.encode() == expected)
    var withoutSignature = message
    withoutSignature.signature = []
    #expect(withoutSignature.encode() == unsigned)
    func parse(_ bytes: [UInt8]) throws(WireError) -> ChallengeAuthResponse {
      try ChallengeAuthResponse(
        parsing: bytes, hashSize: 32, signatureSize: 64, measurementSummaryHashPresent: true)
    }
    #expect(try parse(expected) == message)
    checkStandardRejections(expected) { bytes throws(WireError) in _ = try parse(bytes) }
    // OpaqueDataLength above 1024 is rejected at its own offset (4 + 32 + 32 + 32 = 100).
    var long = expected
    long[100] = 0x01
    long[101] = 0x04  // 1025
    expectWireError(.lengthOutOfRange, at: 100) { () throws(WireError) in _ = try parse(long) }
  }

  @Test func getMeasurements() throws {
    // GET_MEASUREMENTS table: Param1 bit 0 signature requested, Param2 0xFF all, Nonce, SlotIDParam.
    let signed = GetMeasurementsRequest(
      version: .v12, signatureRequested: true, operation: 0xFF, nonce: Self.nonce, slotID: 0)
    let expected = hex("12 E0 01 FF") + Self.nonce + hex("00")
    #expect(signed.encode() == expected)
    #expect(try GetMeasurementsRequest(parsing: expected) == signed)
    checkStandardRejections(expected) { bytes throws(WireError) in
      _ = try GetMeasurementsRequest(parsing: bytes)
    }
    // Unsigned count request: header only.
    let count = GetMeasurementsRequest(version: .v12, signatureRequested: false, operation: 0)
    #expect(count.encode() == hex("12 E0 00 00"))
    #expect(try GetMeasurementsRequest(parsing: hex("12 E0 00 00")) == count)
    // 1.3 unsigned still carries RequesterContext.
    let v13 = GetMeasurementsRequest(
      version: .v13, signatureRequested: false, rawBitStreamRequested: true, operation: 1,
      requesterContext: repeated(9, 8))
    let expected13 = hex("13 E0 02 01") + repeated(9, 8)
    #expect(v13.encode() == expected13)
    #expect(try GetMeasurementsRequest(parsing: expected13) == v13)
    checkStandardRejections(expected13) { bytes throws(WireError) in
      _ = try GetMeasurementsRequest(parsing: bytes)
    }
  }

  static let blocks = [
    MeasurementBlock(
      index: 1,
      dmtf: DMTFMeasurement(valueType: .mutableFirmware, isRawBitStream: false, value: repeated(0xAB, 32))),
    MeasurementBlock(
      index: 2,
      dmtf: DMTFMeasurement(valueType: .hardwareConfiguration, isRawBitStream: true, value: hex("DE AD"))),
  ]

  // Measurement block table + DMTF measurement specification format table.
  static let record: [UInt8] =
    hex("01 01 23 00")  // Index 1, MeasurementSpecification DMTF, MeasurementSize 35
    + hex("01 20 00")  // DMTFSpecMeasurementValueType 1 (mutable firmware, digest), ValueSize 32
    + repeated(0xAB, 32)
    + hex("02 01 05 00")  // Index 2, DMTF, MeasurementSize 5
    + hex("82 02 00 DE AD")  // type 2 | raw bit stream (bit 7), ValueSize 2, value

  @Test func measurements() throws {
    let message = MeasurementsResponse(
      version: .v12, totalMeasurementIndices: 0, slotID: 0, contentChanged: 2, blocks: Self.blocks,
      nonce: repeated(0x99, 32), opaqueData: [], signature: repeated(0x5C, 64))
    // MEASUREMENTS table (1.2), field by field.
    let unsigned =
      hex("12 60 00 20")  // Param1 0, Param2 SlotID 0 | ContentChanged 10b (bits 5:4)
      + hex("02")  // NumberOfBlocks
      + hex("30 00 00")  // MeasurementRecordLength = 39 + 9 = 48 (u24)
      + Self.record
      + repeated(0x99, 32)  // Nonce
      + hex("00 00")  // OpaqueDataLength 0
    let expected = unsigned + repeated(0x5C, 64)  // Signature
    #expect(message.encode() == expected)
    var withoutSignature = message
    withoutSignature.signature = []
    #expect(withoutSignature.encode() == unsigned)
    let parsed = try MeasurementsResponse(parsing: expected, signatureSize: 64)
    #expect(parsed == message)
    #expect(
      parsed.blocks[1].dmtf?.isRawBitStream == true
        && parsed.blocks[1].dmtf?.valueType == .hardwareConfiguration)
    #expect(try MeasurementsResponse(parsing: unsigned, signatureSize: nil) == withoutSignature)
    checkStandardRejections(expected) { bytes throws(WireError) in
      _ = try MeasurementsResponse(parsing: bytes, signatureSize: 64)
    }

    // NumberOfBlocks disagreeing with the record: too many -> truncated at the record end (8 + 48);
    // too few -> the record has bytes left after the first block (8 + 39).
    var tooMany = expected
    tooMany[4] = 3
    expectWireError(.truncated, at: 56) { () throws(WireError) in
      _ = try MeasurementsResponse(parsing: tooMany, signatureSize: 64)
    }
    var tooFew = expected
    tooFew[4] = 1
    expectWireError(.trailingBytes, at: 47) { () throws(WireError) in
      _ = try MeasurementsResponse(parsing: tooFew, signatureSize: 64)
    }
    // A DMTF block whose ValueSize disagrees with MeasurementSize (offset 8 + 4 + 1 = 13).
    var badValue = expected
    badValue[13] = 31
    expectWireError(.lengthOutOfRange, at: 13) { () throws(WireError) in
      _ = try MeasurementsResponse(parsing: badValue, signatureSize: 64)
    }
    // Record length beyond the message.
    var longRecord = expected
    longRecord[7] = 0x01
    expectWireError(.truncated, at: 8) { () throws(WireError) in
      _ = try MeasurementsResponse(parsing: longRecord, signatureSize: 64)
    }
  }

  @Test func measurementRecordParsing() throws {
    #expect(MeasurementBlock.encodeRecord(Self.blocks) == Self.record)
    #expect(try MeasurementBlock.parseRecord(Self.record, count: 2) == Self.blocks)
    // A non-DMTF block keeps its bytes and has no DMTF view.
    let other = try MeasurementBlock.parseRecord(hex("05 02 01 00 FF"), count: 1)
    #expect(other == [MeasurementBlock(index: 5, measurementSpecification: 2, measurement: [0xFF])])
    #expect(other[0].dmtf == nil)
  }

  static let rootHash = repeated(0x11, 32)
  static let shortCert = hex("30 03 02 01 05")
  static let longCert = hex("30 81 80") + repeated(0x04, 128)

  @Test func certificateChain() throws {
    let chain = SPDMCertificateChain(rootHash: Self.rootHash, certificates: Self.shortCert + Self.longCert)
    // Certificate chain format table: Length u16 (4 + 32 + 5 + 131 = 172), Reserved u16, RootHash, certs.
    let expected = hex("AC 00 00 00") + Self.rootHash + Self.shortCert + Self.longCert
    #expect(chain.length == 172)
    #expect(chain.encode() == expected)
    let parsed = try SPDMCertificateChain(parsing: expected, hashSize: 32)
    #expect(parsed == chain)
    #expect(try parsed.certificateDERs() == [Self.shortCert, Self.longCert])
    expectWireError(.lengthOutOfRange, at: 0) { () throws(WireError) in
      _ = try SPDMCertificateChain(parsing: expected + [0], hashSize: 32)
    }
    expectWireError(.truncated, at: 4) { () throws(WireError) in
      _ = try SPDMCertificateChain(parsing: hex("10 00 00 00") + repeated(0, 12), hashSize: 32)
    }
  }

  @Test(arguments: [
    (hex("31 03 02 01 05"), WireError.Code.invalidValue, 36),  // not a SEQUENCE
    (hex("30 80 02 01 05 00 00"), .invalidValue, 37),  // indefinite length
    (hex("30 81 05 02 01 05 00 00"), .invalidValue, 37),  // long form for a length below 128
    (hex("30 82 00 85") + repeated(0, 0x85), .invalidValue, 37),  // leading zero length octet
    (hex("30 83 00 01 00"), .invalidValue, 37),  // three length octets: more than a chain can hold
    (hex("30 05 02 01"), .truncated, 38),  // content runs past the end
    (hex("30"), .truncated, 37),  // no length
  ])
  func certificateSplitRejects(certificates: [UInt8], code: WireError.Code, offset: Int) {
    let chain = SPDMCertificateChain(rootHash: Self.rootHash, certificates: certificates)
    expectWireError(code, at: offset) { () throws(WireError) in _ = try chain.certificateDERs() }
  }
}
