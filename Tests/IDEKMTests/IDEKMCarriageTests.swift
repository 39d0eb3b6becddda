import IDEKM
import SPDM
import Testing

/// IDE_KM rides in SPDM VENDOR_DEFINED_REQUEST with the PCI-SIG header and protocol ID 0x00
/// (PCIe 6.x §6.31.3, §6.33.3; PROTOCOLS.md "Vendor-defined carriage").
@Suite struct IDEKMCarriageTests {
  @Test func queryInVendorDefinedRequest() throws {
    let carried = PCISIGProtocolMessage(protocolID: .ideKM, message: IDEKMQuery(portIndex: 0).encode())
    let bytes = carried.request(version: .v12).encode()
    // version 1.2 | 0xFE | param1 | param2 | StandardID 0x0003 | vendor ID length 2 | 0x0001 |
    // payload length 4 | protocol ID 0x00 | QUERY: object 0x00, reserved, port 0.
    #expect(bytes == [0x12, 0xFE, 0, 0, 0x03, 0x00, 0x02, 0x01, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00])
    let decoded = try PCISIGProtocolMessage(VendorDefinedRequest(parsing: bytes))
    #expect(decoded.protocolID == .ideKM)
    #expect(try IDEKMMessage(parsing: decoded.message) == .query(IDEKMQuery(portIndex: 0)))
  }
}
