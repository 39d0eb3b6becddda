import CoveWire
import IDEKM
import Testing

/// QUERY_RESP with bytes beyond the register blocks its IDE Capability register describes (PCIe 6.x
/// §6.33.3, §7.9.26): the exact answer of DMTF libspdm's sample IDE_KM device, the strict decoding's
/// precise error, and the zero-surplus relaxation.
@Suite struct IDEKMQueryResponseSurplusTests {
  /// What `spdm_responder_emu` (spdm-emu `pci_ide_km_rsp_query.c` with
  /// `pci_ide_km_device_lib_sample`) answers to QUERY for port 0: object 0x01, reserved, port 0,
  /// dev/func 0, bus 0, segment 0, max port 7, then PCI_IDE_KM_IDE_REG_BLOCK_SUPPORTED_COUNT (74)
  /// register DWs, all zero — IDE Capability 0, IDE Control 0 and 288 more zero bytes.
  static let dmtfSampleQueryResponse: [UInt8] =
    [0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07]
    + [UInt8](
      repeating: 0, count: 74 * 4)

  @Test func dmtfSampleAnswerIsRefusedStrictlyWithThePreciseSurplus() {
    #expect(Self.dmtfSampleQueryResponse.count == 303)
    #expect(
      throws: WireError(
        .trailingBytes, at: 15,
        field:
          "QUERY_RESP: 288 zero bytes beyond the register blocks IDE Capability 0x00000000 describes (0 Link IDE, 0 Selective IDE)"
      )
    ) { try IDEKMQueryResponse(parsing: Self.dmtfSampleQueryResponse) }
    // The message the carriage's decoder gives (IDEKMMessage) is the same strict one.
    #expect(throws: WireError.self) { try IDEKMMessage(parsing: Self.dmtfSampleQueryResponse) }
  }

  @Test func dmtfSampleAnswerIsAcceptedWithItsZeroSurplusCounted() throws {
    let answer = try IDEKMQueryResponse(parsing: Self.dmtfSampleQueryResponse, allowingZeroSurplus: true)
    #expect(answer.zeroSurplus == 288)
    #expect(answer.portIndex == 0 && answer.deviceFunction == 0 && answer.bus == 0 && answer.segment == 0)
    #expect(answer.maxPortIndex == 7)
    #expect(answer.capability.rawValue == 0)
    #expect(!answer.capability.selectiveIDESupported && !answer.capability.linkIDESupported)
    #expect(answer.capability.selectiveStreamCount == 0 && answer.capability.linkStreamCount == 0)
    #expect(answer.linkStreams.isEmpty && answer.selectiveStreams.isEmpty)
    // The surplus is not part of the encoding: re-encoded, it is the strict 15 bytes.
    #expect(answer.encode() == Array(Self.dmtfSampleQueryResponse.prefix(15)))
  }

  @Test func nonZeroSurplusIsRefusedEvenWhenZeroSurplusIsAllowed() {
    var bytes = Self.dmtfSampleQueryResponse
    bytes[302] = 0x01
    let expected = WireError(
      .trailingBytes, at: 15,
      field:
        "QUERY_RESP: 288 bytes beyond the register blocks IDE Capability 0x00000000 describes (0 Link IDE, 0 Selective IDE)"
    )
    #expect(throws: expected) { try IDEKMQueryResponse(parsing: bytes, allowingZeroSurplus: true) }
    #expect(throws: expected) { try IDEKMQueryResponse(parsing: bytes) }
  }

  @Test func surplusAfterDescribedBlocksNamesTheCapability() throws {
    // One selective stream (no address association blocks), IDE_KM: 15 + 20 bytes, then 8 zeros.
    let response = IDEKMQueryResponse(
      portIndex: 0, deviceFunction: 0x08, bus: 3, segment: 0, maxPortIndex: 0,
      capability: IDECapabilityRegister(linkStreams: 0, selectiveStreams: 1), linkStreams: [],
      selectiveStreams: [.init()])
    let bytes = response.encode() + [UInt8](repeating: 0, count: 8)
    #expect(
      throws: WireError(
        .trailingBytes, at: 35,
        field:
          "QUERY_RESP: 8 zero bytes beyond the register blocks IDE Capability 0x00000042 describes (0 Link IDE, 1 Selective IDE)"
      )
    ) { try IDEKMQueryResponse(parsing: bytes) }
    let relaxed = try IDEKMQueryResponse(parsing: bytes, allowingZeroSurplus: true)
    #expect(relaxed.zeroSurplus == 8)
    #expect(relaxed.selectiveStreams == response.selectiveStreams)
    // A strictly well-formed answer decodes the same either way, with no surplus.
    #expect(try IDEKMQueryResponse(parsing: response.encode(), allowingZeroSurplus: true) == response)
    #expect(response.zeroSurplus == 0)
  }

  @Test func truncatedStaysTruncatedWhenZeroSurplusIsAllowed() {
    #expect(throws: WireError(.truncated, at: 11, field: "IDE Control Register")) {
      try IDEKMQueryResponse(
        parsing: Array(Self.dmtfSampleQueryResponse.prefix(11)), allowingZeroSurplus: true)
    }
  }
}
