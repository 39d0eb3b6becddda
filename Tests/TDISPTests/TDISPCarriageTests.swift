import CoveWire
import SPDM
import TDISP
import Testing

@Suite struct TDISPCarriageTests {
  @Test func requestRoundTripsThroughVendorDefined() throws {
    let request = TDISPRequest(interfaceID: tdiID, body: .getDeviceInterfaceState)
    let spdm = request.pciSIGMessage.request(version: .v12).encode()
    // SPDM 1.2 VENDOR_DEFINED_REQUEST: 12 FE 00 00 | StandardID 03 00 | Len 02 | VendorID 01 00 |
    // ReqLength 11 00 (17 = 1 + 16) | protocol 01 | TDISP header.
    #expect(spdm == [0x12, 0xFE, 0, 0, 0x03, 0x00, 0x02, 0x01, 0x00, 0x11, 0x00, 0x01] + header(0x85))
    let decoded = try TDISPRequest(PCISIGProtocolMessage(VendorDefinedRequest(parsing: spdm)))
    #expect(decoded == request)
  }

  @Test func responseRoundTrip() throws {
    let response = TDISPResponse(interfaceID: tdiID, body: .deviceInterfaceState(.configLocked))
    #expect(try TDISPResponse(response.pciSIGMessage) == response)
  }

  @Test func ideKMIsNotTDISP() {
    let message = PCISIGProtocolMessage(protocolID: .ideKM, message: header(0x85))
    #expect(throws: WireError(.unexpectedMessage, at: 0, field: "PCI-SIG protocol ID (not TDISP)")) {
      try TDISPRequest(message)
    }
  }
}
