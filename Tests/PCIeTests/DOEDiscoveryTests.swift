import CoveWire
import PCIe
import Testing

@Suite("DOE Discovery (PCIe 6.x §6.30.1.1)")
struct DOEDiscoveryTests {
  @Test func requestBytes() throws {
    let request = DOEDiscoveryRequest(index: 1)
    #expect(request.encode() == [0x01, 0x00, 0x00, 0x00])
    // Discovery object: vendor 0001, type 00, length 3, then index 1, version 0, reserved.
    let bytes: [UInt8] = [0x01, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00]
    #expect(request.dataObject().encode() == bytes)
    #expect(try DOEDiscoveryRequest(parsing: DOEDataObject(parsing: bytes)) == request)
  }

  @Test func requestCarriesTheDiscoveryVersion() throws {
    let request = DOEDiscoveryRequest(index: 0, version: 2)
    #expect(request.encode() == [0x00, 0x02, 0x00, 0x00])
    #expect(try DOEDiscoveryRequest(parsing: [0x00, 0x02, 0xAB, 0xCD]) == request)  // reserved ignored
  }

  @Test func responseBytes() throws {
    let response = DOEDiscoveryResponse(protocol: .spdm, nextIndex: 2)
    #expect(response.encode() == [0x01, 0x00, 0x01, 0x02])
    let bytes: [UInt8] = [0x01, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x02]
    #expect(response.dataObject().encode() == bytes)
    #expect(try DOEDiscoveryResponse(parsing: DOEDataObject(parsing: bytes)) == response)
    #expect(!response.isLast)
  }

  /// Index 0 is DOE Discovery itself, then CMA/SPDM, then secured CMA/SPDM; next index 0 ends.
  @Test func standardTableWalk() throws {
    let table = DOEDiscoveryTable.standard
    var index: UInt8 = 0
    var seen: [DOEProtocol] = []
    var payloads: [[UInt8]] = []
    repeat {
      let reply = try #require(try table.respond(to: DOEDiscoveryRequest(index: index).dataObject()))
      #expect(reply.dataProtocol == .discovery)
      payloads.append(reply.payload)
      let response = try DOEDiscoveryResponse(parsing: reply)
      seen.append(response.dataProtocol)
      index = response.nextIndex
    } while index != 0 && seen.count < 10
    #expect(seen == [.discovery, .spdm, .securedSPDM])
    #expect(payloads == [[0x01, 0x00, 0x00, 0x01], [0x01, 0x00, 0x01, 0x02], [0x01, 0x00, 0x02, 0x00]])
  }

  @Test func indexPastTheEndHasNoResponse() throws {
    #expect(DOEDiscoveryTable.standard.response(to: DOEDiscoveryRequest(index: 3)) == nil)
    #expect(DOEDiscoveryTable.standard.response(to: DOEDiscoveryRequest(index: 255)) == nil)
  }

  @Test func configurableLayout() throws {
    // A device that lists only its protocols (no discovery entry at 0), as some designs describe it.
    let table = DOEDiscoveryTable(protocols: [.spdm, .securedSPDM])
    #expect(
      table.response(to: DOEDiscoveryRequest(index: 0)) == DOEDiscoveryResponse(protocol: .spdm, nextIndex: 1)
    )
    #expect(
      table.response(to: DOEDiscoveryRequest(index: 1))
        == DOEDiscoveryResponse(protocol: .securedSPDM, nextIndex: 0))
    #expect(table.supports(.spdm))
    #expect(!table.supports(.discovery))
  }

  @Test func rejectsMalformedPayloads() {
    // Offsets count from the start of the data object (payload starts at byte 8).
    #expect(throws: WireError(.truncated, at: 10, field: "Reserved")) {
      try DOEDiscoveryRequest(parsing: [0x00, 0x00, 0x00])
    }
    #expect(throws: WireError(.trailingBytes, at: 12, field: "DOE Discovery request")) {
      try DOEDiscoveryRequest(parsing: [0, 0, 0, 0, 0, 0, 0, 0])
    }
    #expect(throws: WireError(.truncated, at: 11, field: "Next Index")) {
      try DOEDiscoveryResponse(parsing: [0x01, 0x00, 0x01])
    }
    #expect(throws: WireError(.trailingBytes, at: 12, field: "DOE Discovery response")) {
      try DOEDiscoveryResponse(parsing: [0, 0, 0, 0, 0])
    }
    let spdm = DOEDataObject(protocol: .spdm, payload: [0, 0, 0, 0])
    #expect(throws: WireError(.unexpectedMessage, at: 0, field: "Vendor ID / Data Object Type")) {
      try DOEDiscoveryRequest(parsing: spdm)
    }
  }
}
