import CoveWire
import SPDM
import Testing

@Suite struct PCISIGProtocolMessageTests {
  /// PCIe 6.x §6.31.3: StandardID 3, Len 2, VendorID 0x0001, ReqLength, protocol ID, message.
  @Test func tdispRequestBytes() throws {
    let message = PCISIGProtocolMessage(protocolID: .tdisp, message: [0x10, 0x81, 0, 0])
    let request = message.request(version: .v12)
    #expect(
      request.encode() == [
        0x12, 0xFE, 0, 0, 0x03, 0x00, 0x02, 0x01, 0x00, 0x05, 0x00, 0x01, 0x10, 0x81, 0, 0,
      ])
    #expect(try PCISIGProtocolMessage(VendorDefinedRequest(parsing: request.encode())) == message)
  }

  @Test func otherBodiesAreRecognisedAsNotPCISIG() {
    #expect(throws: WireError(.unexpectedMessage, at: 4, field: "StandardID (not PCI-SIG)")) {
      try PCISIGProtocolMessage(standardID: 4, vendorID: [1, 0], payload: [1])
    }
    #expect(throws: WireError(.unexpectedMessage, at: 7, field: "VendorID (not PCI-SIG)")) {
      try PCISIGProtocolMessage(standardID: 3, vendorID: [0x36, 0x1B], payload: [1])
    }
    #expect(throws: WireError(.truncated, at: 11, field: "PCI-SIG protocol ID")) {
      try PCISIGProtocolMessage(standardID: 3, vendorID: [1, 0], payload: [])
    }
  }
}
