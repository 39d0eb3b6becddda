import CoveWire
import PCIe
import Testing

@Suite("DOE data objects (PCIe 6.x §6.30.1)")
struct DOEDataObjectTests {
  /// SPDM GET_VERSION (10 84 00 00) in a CMA/SPDM object: DW0 = vendor 0001, type 01, rsvd 00;
  /// DW1 = 3 DWs (2 header + 1 payload).
  @Test func encodesSPDMGetVersion() throws {
    let object = DOEDataObject(protocol: .spdm, payload: [0x10, 0x84, 0x00, 0x00])
    let expected: [UInt8] = [0x01, 0x00, 0x01, 0x00, 0x03, 0x00, 0x00, 0x00, 0x10, 0x84, 0x00, 0x00]
    #expect(object.encode() == expected)
    #expect(object.encodeDWords() == [0x0001_0001, 0x0000_0003, 0x0000_8410])
    #expect(try DOEDataObject(parsing: expected) == object)
    #expect(try DOEDataObject(parsingDWords: object.encodeDWords()) == object)
  }

  @Test func padsToADWordAndKeepsThePaddingWhenDecoding() throws {
    let object = DOEDataObject(vendorID: 0x1234, type: 0x56, payload: [0xAA, 0xBB, 0xCC, 0xDD, 0xEE])
    let bytes = object.encode()
    #expect(
      bytes == [0x34, 0x12, 0x56, 0x00, 0x04, 0x00, 0x00, 0x00, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0, 0, 0])
    let decoded = try DOEDataObject(parsing: bytes)
    #expect(decoded.vendorID == 0x1234)
    #expect(decoded.type == 0x56)
    #expect(decoded.payload == [0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0, 0, 0])
  }

  @Test func emptyPayloadIsTwoDWords() throws {
    let object = DOEDataObject(protocol: .securedSPDM, payload: [])
    #expect(object.encode() == [0x01, 0x00, 0x02, 0x00, 0x02, 0x00, 0x00, 0x00])
    #expect(try DOEDataObject(parsing: object.encode()) == object)
  }

  @Test func ignoresTheReservedHeaderByte() throws {
    let bytes: [UInt8] = [0x01, 0x00, 0x01, 0xFF, 0x02, 0x00, 0x00, 0x00]
    #expect(try DOEDataObject(parsing: bytes) == DOEDataObject(protocol: .spdm, payload: []))
  }

  /// The largest object, 2^18 DWs, has length field 0 (PCIe 6.x §6.30.1).
  @Test func lengthZeroMeansTwoToTheEighteenDWords() throws {
    let payload = [UInt8](repeating: 0x5A, count: DOEDataObject.maxPayloadBytes)
    let object = DOEDataObject(protocol: .spdm, payload: payload)
    #expect(object.lengthInDWords == 1 << 18)
    let bytes = object.encode()
    #expect(bytes.count == 1 << 20)
    #expect(Array(bytes[4..<8]) == [0, 0, 0, 0])
    #expect(try DOEDataObject(parsing: bytes) == object)
  }

  @Test func largestLengthBelowTheLimitIsEncodedAsIs() {
    let payload = [UInt8](repeating: 0, count: DOEDataObject.maxPayloadBytes - 4)
    let object = DOEDataObject(protocol: .spdm, payload: payload)
    #expect(Array(object.encode()[4..<8]) == [0xFF, 0xFF, 0x03, 0x00])
  }

  struct Rejection: Sendable, CustomTestStringConvertible {
    let name: String
    let bytes: [UInt8]
    let code: WireError.Code
    let offset: Int
    var testDescription: String { name }
  }

  static let rejections: [Rejection] = [
    Rejection(name: "empty", bytes: [], code: .truncated, offset: 0),
    Rejection(name: "header cut in DW0", bytes: [0x01, 0x00, 0x01], code: .truncated, offset: 3),
    Rejection(
      name: "7 bytes", bytes: [0x01, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00], code: .truncated, offset: 4),
    Rejection(
      name: "partial DW", bytes: [0x01, 0x00, 0x01, 0x00, 0x03, 0x00, 0x00, 0x00, 0x10],
      code: .truncated, offset: 8),
    Rejection(
      name: "length larger than DWs present",
      bytes: [0x01, 0x00, 0x01, 0x00, 0x04, 0x00, 0x00, 0x00, 0x10, 0x84, 0x00, 0x00],
      code: .lengthOutOfRange, offset: 4),
    Rejection(
      name: "length smaller than DWs present",
      bytes: [0x01, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x10, 0x84, 0x00, 0x00],
      code: .lengthOutOfRange, offset: 4),
    Rejection(
      name: "length 1 (cannot hold the header)",
      bytes: [0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00],
      code: .lengthOutOfRange, offset: 4),
    Rejection(
      name: "length 0 (2^18) on a short object",
      bytes: [0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x84, 0x00, 0x00],
      code: .lengthOutOfRange, offset: 4),
    Rejection(
      name: "reserved length bit 18",
      bytes: [0x01, 0x00, 0x01, 0x00, 0x03, 0x00, 0x04, 0x00, 0x10, 0x84, 0x00, 0x00],
      code: .invalidValue, offset: 4),
    Rejection(
      name: "reserved length bit 31",
      bytes: [0x01, 0x00, 0x01, 0x00, 0x03, 0x00, 0x00, 0x80, 0x10, 0x84, 0x00, 0x00],
      code: .invalidValue, offset: 4),
  ]

  @Test(arguments: rejections)
  func rejects(_ rejection: Rejection) {
    #expect {
      try DOEDataObject(parsing: rejection.bytes)
    } throws: { error in
      guard let error = error as? WireError else { return false }
      return error.code == rejection.code && error.offset == rejection.offset
    }
  }

  @Test func rejectsMoreThanTwoToTheTwentyBytes() {
    var bytes = [UInt8](repeating: 0, count: (1 << 20) + 4)
    bytes[0] = 0x01
    bytes[2] = 0x01
    #expect {
      try DOEDataObject(parsing: bytes)
    } throws: { error in
      guard let error = error as? WireError else { return false }
      return error.code == .lengthOutOfRange && error.offset == 1 << 20
    }
    let dwords = [UInt32](repeating: 0, count: (1 << 18) + 1)
    #expect {
      try DOEDataObject(parsingDWords: dwords)
    } throws: { ($0 as? WireError)?.code == .lengthOutOfRange }
  }

  @Test func typeAndProtocolConstants() {
    #expect(DOEDataObjectType.discovery.rawValue == 0)
    #expect(DOEDataObjectType.spdm.rawValue == 1)
    #expect(DOEDataObjectType.securedSPDM.rawValue == 2)
    #expect(DOEProtocol.pciSIGVendorID == 0x0001)
    #expect(DOEProtocol.spdm == DOEProtocol(vendorID: 1, type: 1))
    #expect(DOEProtocol(vendorID: 0x8086, type: 0x42).dataObjectType.rawValue == 0x42)
    #expect(DOEProtocol.securedSPDM.description == "PCI-SIG secured SPDM")
  }
}
