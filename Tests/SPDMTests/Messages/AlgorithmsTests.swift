import CoveWire
import SPDM
import Testing

@Suite("NEGOTIATE_ALGORITHMS / ALGORITHMS")
struct AlgorithmsTests {
  static let request = NegotiateAlgorithmsRequest(
    version: .v12, measurementSpecification: .dmtf, otherParamsSupport: 0x02,
    baseAsymAlgorithms: [.ecdsaP256, .ecdsaP384], baseHashAlgorithms: [.sha256, .sha384],
    dheGroups: [.secp256r1, .secp384r1], aeadCipherSuites: [.aes256GCM],
    requesterBaseAsymAlgorithms: [.ecdsaP384], keySchedules: [.spdm])

  // DSP0274 "NEGOTIATE_ALGORITHMS request message format" table, field by field.
  static let requestBytes: [UInt8] =
    hex("12 E3 04 00")  // SPDMVersion 1.2, NEGOTIATE_ALGORITHMS, Param1 = 4 AlgStructs, Param2 reserved
    + hex("30 00")  // Length = 32 fixed + 4 * 4 AlgStruct bytes = 48
    + hex("01")  // MeasurementSpecification: DMTF
    + hex("02")  // OtherParamsSupport: OpaqueDataFmt1
    + hex("90 00 00 00")  // BaseAsymAlgo: ECDSA P-256 (bit 4) | ECDSA P-384 (bit 7)
    + hex("03 00 00 00")  // BaseHashAlgo: SHA-256 | SHA-384
    + repeated(0, 12)  // Reserved
    + hex("00 00")  // ExtAsymCount, ExtHashCount
    + hex("00 00")  // Reserved, MELspecification (reserved in 1.2)
    + hex("02 20 18 00")  // AlgType DHE, AlgCount (2 fixed bytes, 0 ext), secp256r1 | secp384r1
    + hex("03 20 02 00")  // AlgType AEAD, AES-256-GCM
    + hex("04 20 80 00")  // AlgType ReqBaseAsymAlg, ECDSA P-384
    + hex("05 20 01 00")  // AlgType KeySchedule, SPDM

  static let response = AlgorithmsResponse(
    version: .v12, measurementSpecificationSelection: .dmtf, otherParamsSelection: 0x02,
    measurementHashAlgorithm: [.sha384], baseAsymSelection: [.ecdsaP384], baseHashSelection: [.sha384],
    dheGroup: [.secp384r1], aeadCipherSuite: [.aes256GCM], requesterBaseAsymAlgorithm: [.ecdsaP384],
    keySchedule: [.spdm])

  // DSP0274 "Successful ALGORITHMS response message format" table, field by field.
  static let responseBytes: [UInt8] =
    hex("12 63 04 00")  // 1.2, ALGORITHMS, Param1 = 4 AlgStructs
    + hex("34 00")  // Length = 36 + 16 = 52
    + hex("01")  // MeasurementSpecificationSel: DMTF
    + hex("02")  // OtherParamsSelection: OpaqueDataFmt1
    + hex("04 00 00 00")  // MeasurementHashAlgo: SHA-384 (bit 2)
    + hex("80 00 00 00")  // BaseAsymSel: ECDSA P-384
    + hex("02 00 00 00")  // BaseHashSel: SHA-384
    + repeated(0, 11)  // Reserved
    + hex("00")  // MELspecificationSel (reserved in 1.2)
    + hex("00 00")  // ExtAsymSelCount, ExtHashSelCount
    + hex("00 00")  // Reserved
    + hex("02 20 10 00")  // DHE: secp384r1
    + hex("03 20 02 00")  // AEAD: AES-256-GCM
    + hex("04 20 80 00")  // ReqBaseAsymAlg: ECDSA P-384
    + hex("05 20 01 00")  // KeySchedule: SPDM

  @Test func requestGolden() throws {
    #expect(Self.request.encode() == Self.requestBytes)
    #expect(try NegotiateAlgorithmsRequest(parsing: Self.requestBytes) == Self.request)
    checkStandardRejections(Self.requestBytes) { bytes throws(WireError) in
      _ = try NegotiateAlgorithmsRequest(parsing: bytes)
    }
  }

  @Test func requestWithExtendedAlgorithmsRoundTrips() throws {
    var message = Self.request
    message.version = .v13
    message.melSpecification = .dmtf
    message.extAsym = [ExtendedAlgorithm(registryID: 3, algorithmID: 0x1234)]
    message.algStructExtensions = [.aead: [ExtendedAlgorithm(registryID: 1, algorithmID: 7)]]
    message.algStructTypes = [.dhe, .aead]
    // Only the listed AlgStructs are sent; the others decode as empty.
    message.requesterBaseAsymAlgorithms = []
    message.keySchedules = []
    let bytes = message.encode()
    #expect(bytes.count == 32 + 4 + 4 + 8)
    #expect(Array(bytes[28...31]) == hex("01 00 00 01"))  // ExtAsymCount 1, ExtHashCount 0, rsvd, MEL DMTF
    #expect(Array(bytes[36...]) == hex("02 20 18 00 03 21 02 00 01 00 07 00"))
    #expect(try NegotiateAlgorithmsRequest(parsing: bytes) == message)
  }

  @Test func requestCaps() {
    func parse(_ bytes: [UInt8]) throws(WireError) { _ = try NegotiateAlgorithmsRequest(parsing: bytes) }
    var bytes = Self.requestBytes
    // Length must equal the message size.
    bytes[4] = 0x31
    expectWireError(.lengthOutOfRange, at: 4, "Length mismatch") { () throws(WireError) in try parse(bytes) }
    // Length at most 128 bytes (1.1+).
    bytes[4] = 0x81
    expectWireError(.lengthOutOfRange, at: 4, "Length > 128") { () throws(WireError) in try parse(bytes) }
    // ExtAsymCount + ExtHashCount at most 20.
    bytes = Self.requestBytes
    bytes[28] = 11
    bytes[29] = 10
    expectWireError(.lengthOutOfRange, at: 28, "ext count > 20") { () throws(WireError) in try parse(bytes) }
    // At most four AlgStructs.
    bytes = Self.requestBytes
    bytes[2] = 5
    expectWireError(.lengthOutOfRange, at: 2, "5 AlgStructs") { () throws(WireError) in try parse(bytes) }
    // AlgTypes ascending: swap DHE and AEAD.
    bytes = Self.requestBytes
    bytes.replaceSubrange(32..<40, with: hex("03 20 02 00 02 20 18 00"))
    expectWireError(.invalidValue, at: 36, "AlgType order") { () throws(WireError) in try parse(bytes) }
    // A repeated AlgType is not ascending either.
    bytes = Self.requestBytes
    bytes[36] = 2
    expectWireError(.invalidValue, at: 36, "AlgType twice") { () throws(WireError) in try parse(bytes) }
    // FixedAlgCount must be 2.
    bytes = Self.requestBytes
    bytes[33] = 0x30
    expectWireError(.invalidValue, at: 33, "FixedAlgCount 3") { () throws(WireError) in try parse(bytes) }
    // AlgType 6 is not defined before 1.4.
    bytes = Self.requestBytes
    bytes[44] = 6
    expectWireError(.invalidValue, at: 44, "AlgType 6") { () throws(WireError) in try parse(bytes) }
  }

  @Test func responseGolden() throws {
    #expect(Self.response.encode() == Self.responseBytes)
    #expect(try AlgorithmsResponse(parsing: Self.responseBytes) == Self.response)
    checkStandardRejections(Self.responseBytes) { bytes throws(WireError) in
      _ = try AlgorithmsResponse(parsing: bytes)
    }
  }

  @Test func responseCaps() {
    func parse(_ bytes: [UInt8]) throws(WireError) { _ = try AlgorithmsResponse(parsing: bytes) }
    var bytes = Self.responseBytes
    bytes[4] = 0x35
    expectWireError(.lengthOutOfRange, at: 4, "Length mismatch") { () throws(WireError) in try parse(bytes) }
    // A selection carries at most one extended algorithm of each kind.
    bytes = Self.responseBytes
    bytes[32] = 2
    expectWireError(.lengthOutOfRange, at: 32) { () throws(WireError) in try parse(bytes) }
    bytes = Self.responseBytes
    bytes[33] = 2
    expectWireError(.lengthOutOfRange, at: 33) { () throws(WireError) in try parse(bytes) }
    bytes = Self.responseBytes
    bytes[41] = 0x22
    expectWireError(.lengthOutOfRange, at: 41, "AlgStruct ExtAlgCount 2") { () throws(WireError) in
      try parse(bytes)
    }
  }

  @Test func flagBitsMatchSpec() {
    // Spot checks against DSP0274 tables / libspdm spdm.h.
    #expect(BaseAsymAlgorithms.ecdsaP256.rawValue == 0x10 && BaseAsymAlgorithms.ecdsaP384.rawValue == 0x80)
    #expect(BaseAsymAlgorithms.eddsaEd448.rawValue == 0x800)
    #expect(MeasurementHashAlgorithms.sha384.rawValue == 0x04)
    #expect(DHEGroups.secp384r1.rawValue == 0x10 && DHEGroups.sm2P256.rawValue == 0x40)
    #expect(
      ResponderCapabilities.aliasCert.rawValue == 0x40000 && ResponderCapabilities.mel.rawValue == 0x100_0000)
    #expect(RequesterCapabilities.chunk.rawValue == 0x20000)
    #expect(BaseAsymAlgorithms.ecdsaP384.signatureSize == 96 && BaseHashAlgorithms.sha384.hashSize == 48)
    #expect(DHEGroups.secp384r1.exchangeDataSize == 96)
  }
}
