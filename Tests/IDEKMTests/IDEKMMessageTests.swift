import CoveWire
import IDEKM
import Testing

/// Exact bytes hand-derived from PCIe 6.x §6.33.3 (object ID first; protocol ID 0x00 belongs to the
/// vendor-defined carriage).
@Suite struct IDEKMMessageTests {
  @Test func query() throws {
    let bytes: [UInt8] = [0x00, 0x00, 0x02]
    #expect(IDEKMQuery(portIndex: 2).encode() == bytes)
    #expect(try IDEKMQuery(parsing: bytes) == IDEKMQuery(portIndex: 2))
    #expect(throws: WireError(.truncated, at: 2, field: "PortIndex")) { try IDEKMQuery(parsing: [0, 0]) }
    #expect(throws: WireError(.trailingBytes, at: 3, field: "QUERY")) {
      try IDEKMQuery(parsing: [0, 0, 2, 9])
    }
    #expect(throws: WireError(.unexpectedMessage, at: 0, field: "Object ID (expected QUERY)")) {
      try IDEKMQuery(parsing: [1, 0, 2])
    }
  }

  @Test func keySubStreamByte() {
    // K1 | TX | CPL = bit0 1, bit1 1, bits 7:4 = 2 → 0x23.
    let sub = IDEKeySubStream(keySet: .k1, direction: .transmit, subStream: .completion)
    #expect(sub.rawValue == 0x23)
    #expect(IDEKeySubStream(rawValue: 0x10).keySet == .k0)
    #expect(IDEKeySubStream(rawValue: 0x10).direction == .receive)
    #expect(IDEKeySubStream(rawValue: 0x10).subStream == .nonPosted)
    #expect(IDEKeySubStream(rawValue: 0x30).subStream.isDefined == false)
    #expect(IDEKeySubStream(rawValue: 0x0C).reservedBits == 0x0C)
    #expect(sub.description == "K1|TX|CPL")
  }

  @Test func keyWireOrder() {
    let aes = (0..<32).map { UInt8($0) }
    let key = IDEKey(aes256: aes)
    // DW7 = k[28…31] first, big-endian inside each DW.
    #expect(Array(key.wire[0..<8]) == [28, 29, 30, 31, 24, 25, 26, 27])
    #expect(Array(key.wire[28..<32]) == [0, 1, 2, 3])
    #expect(key.aes256 == aes)
    #expect(IDEKey(wire: key.wire).aes256 == aes)
  }

  @Test func keyProgram() throws {
    let aes = (0..<32).map { UInt8(0xA0 &+ $0) }
    let message = IDEKMKeyProgram(
      streamID: 5, subStream: IDEKeySubStream(keySet: .k0, direction: .transmit, subStream: .nonPosted),
      portIndex: 1, key: IDEKey(aes256: aes), initialFieldValue: [1, 2, 3, 4, 5, 6, 7, 8])
    var expected: [UInt8] = [0x02, 0x00, 0x00, 0x05, 0x00, 0x12, 0x01]
    for dword in (0..<8).reversed() { expected += aes[(4 * dword)..<(4 * dword + 4)] }
    expected += [1, 2, 3, 4, 5, 6, 7, 8]
    #expect(expected.count == 47)
    #expect(message.encode() == expected)
    #expect(try IDEKMKeyProgram(parsing: expected) == message)
    #expect(throws: WireError(.truncated, at: 39, field: "IFV")) {
      try IDEKMKeyProgram(parsing: Array(expected.dropLast()))
    }
    #expect(throws: WireError(.trailingBytes, at: 47, field: "KEY_PROG")) {
      try IDEKMKeyProgram(parsing: expected + [0])
    }
    #expect(throws: WireError(.truncated, at: 7, field: "Key")) {
      try IDEKMKeyProgram(parsing: Array(expected.prefix(7)))
    }
  }

  @Test func keyProgramAck() throws {
    let bytes: [UInt8] = [0x03, 0x00, 0x00, 0x07, 0x02, 0x21, 0x03]
    let ack = IDEKMKeyProgramAck(
      streamID: 7, status: .unsupportedPortIndex,
      subStream: IDEKeySubStream(keySet: .k1, direction: .receive, subStream: .completion), portIndex: 3)
    #expect(ack.encode() == bytes + [])
    #expect(try IDEKMKeyProgramAck(parsing: bytes) == ack)
    #expect(IDEKMKeyProgramStatus(rawValue: 9).description == "status 0x9")
    #expect(
      [
        IDEKMKeyProgramStatus.success, .incorrectLength, .unsupportedPortIndex, .unsupportedValue,
        .unspecifiedFailure,
      ]
      .map(\.rawValue) == [0, 1, 2, 3, 4])
    #expect(throws: WireError(.truncated, at: 6, field: "PortIndex")) {
      try IDEKMKeyProgramAck(parsing: Array(bytes.prefix(6)))
    }
  }

  @Test func goStopAndAck() throws {
    let sub = IDEKeySubStream(keySet: .k1, direction: .transmit, subStream: .posted)
    let go = IDEKMKeySetCommand.go(streamID: 0, subStream: sub, portIndex: 0)
    #expect(go.encode() == [0x04, 0, 0, 0x00, 0, 0x03, 0x00])
    let stop = IDEKMKeySetCommand.stop(streamID: 0xFF, subStream: sub, portIndex: 1)
    #expect(stop.encode() == [0x05, 0, 0, 0xFF, 0, 0x03, 0x01])
    #expect(stop.acknowledgement.encode() == [0x06, 0, 0, 0xFF, 0, 0x03, 0x01])
    #expect(try IDEKMKeySetCommand(parsing: [0x05, 0, 0, 0xFF, 0, 0x03, 0x01]) == stop)
    #expect(
      throws: WireError(
        .unexpectedMessage, at: 0, field: "Object ID (expected K_SET_GO/K_SET_STOP/K_GOSTOP_ACK)")
    ) {
      try IDEKMKeySetCommand(parsing: [0x03, 0, 0, 0, 0, 0, 0])
    }
    #expect(throws: WireError(.trailingBytes, at: 7, field: "K_SET_GO")) {
      try IDEKMKeySetCommand(parsing: go.encode() + [0])
    }
  }

  @Test func queryResponse() throws {
    // Link IDE with 2 TCs (bits 15:13 = 1), Selective IDE with 1 stream (bits 23:16 = 0), IDE_KM.
    let capability = IDECapabilityRegister(linkStreams: 2, selectiveStreams: 1)
    #expect(capability.rawValue == 0x0000_2043)
    let response = IDEKMQueryResponse(
      portIndex: 0, deviceFunction: 0x08, bus: 0x3A, segment: 1, maxPortIndex: 0, capability: capability,
      control: 0, linkStreams: [.init(control: 1, status: 2), .init()],
      selectiveStreams: [
        .init(
          control: 0x0100_0001, status: 0, ridAssociation1: 0xFFFF00, ridAssociation2: 1,
          addressAssociations: [[0xFFF0_0001, 0, 0]])
      ])
    var expected: [UInt8] = [0x01, 0x00, 0x00, 0x08, 0x3A, 0x01, 0x00]
    expected += [0x43, 0x20, 0x00, 0x00, 0, 0, 0, 0]
    expected += [1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    expected += [1, 0, 0, 0]  // selective capability: 1 address association block
    expected += [0x01, 0, 0, 0x01, 0, 0, 0, 0, 0x00, 0xFF, 0xFF, 0x00, 1, 0, 0, 0]
    expected += [0x01, 0x00, 0xF0, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0]
    #expect(expected.count == 63)
    #expect(response.encode() == expected)
    #expect(try IDEKMQueryResponse(parsing: expected) == response)
    #expect(throws: WireError(.truncated, at: 59, field: "IDE Address Association Register 3")) {
      try IDEKMQueryResponse(parsing: Array(expected.dropLast()))
    }
    #expect(
      throws: WireError(
        .trailingBytes, at: 63,
        field:
          "QUERY_RESP: 1 zero byte beyond the register blocks IDE Capability 0x00002043 describes (2 Link IDE, 1 Selective IDE)"
      )
    ) {
      try IDEKMQueryResponse(parsing: expected + [0])
    }
    // No Link, no Selective: the fixed part only.
    let bare: [UInt8] = [0x01, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0]
    #expect(try IDEKMQueryResponse(parsing: bare).linkStreams.isEmpty)
    #expect(throws: WireError(.truncated, at: 11, field: "IDE Control Register")) {
      try IDEKMQueryResponse(parsing: Array(bare.prefix(11)))
    }
  }

  @Test func parseByObjectID() throws {
    #expect(try IDEKMMessage(parsing: [0, 0, 1]) == .query(IDEKMQuery(portIndex: 1)))
    let stop = try IDEKMMessage(parsing: [0x05, 0, 0, 1, 0, 0, 0])
    #expect(stop.objectID == .keySetStop)
    #expect(stop.encode() == [0x05, 0, 0, 1, 0, 0, 0])
    if case .keySetGo = try IDEKMMessage(parsing: [0x04, 0, 0, 1, 0, 0, 0]) {
    } else {
      Issue.record("not GO")
    }
    #expect(throws: WireError(.unexpectedMessage, at: 0, field: "Object ID (unknown IDE_KM object)")) {
      try IDEKMMessage(parsing: [0x07])
    }
    #expect(throws: WireError(.truncated, at: 0, field: "Object ID")) { try IDEKMMessage(parsing: []) }
  }
}
