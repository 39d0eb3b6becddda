import CoveWire
import IDEKM
import Testing

func testKey(_ seed: UInt8) -> IDEKey { IDEKey(aes256: (0..<32).map { seed &+ UInt8($0) }) }

/// A device with one port: selective stream 1 (the TDISP default stream) and link stream 0.
func makeResponder() -> IDEKMResponder {
  IDEKMResponder(ports: [
    IDEKMPort(
      deviceFunction: 0x08, bus: 0x3A, capability: IDECapabilityRegister(linkStreams: 1, selectiveStreams: 1),
      linkBlocks: [.init()], selectiveBlocks: [.init()], streams: [1: .selective, 0: .link])
  ])
}

extension IDEKMResponder {
  mutating func program(
    _ keySet: IDEKeySet, stream: UInt8 = 1, session: IDEKMSessionID, seed: UInt8 = 0x10
  ) -> [IDEKMKeyProgramStatus] {
    IDEKeySlotID.all(in: keySet).map { slot in
      let request = IDEKMKeyProgram(
        streamID: stream, subStream: slot.keySubStream, portIndex: 0, key: testKey(seed)
      ).encode()
      let reply = respond(to: request, session: session).response!
      return try! IDEKMKeyProgramAck(parsing: reply).status
    }
  }

  mutating func goAll(_ keySet: IDEKeySet, stream: UInt8 = 1, session: IDEKMSessionID) -> [IDEStreamEvent] {
    IDEKeySlotID.all(in: keySet).flatMap { slot in
      respond(
        to: IDEKMKeySetCommand.go(streamID: stream, subStream: slot.keySubStream, portIndex: 0).encode(),
        session: session
      ).events.map(\.event)
    }
  }
}

@Suite struct IDEKMResponderTests {
  let s1 = IDEKMSessionID(0xAAAA_0001)
  let s2 = IDEKMSessionID(0xBBBB_0002)

  @Test func queryAnswersPortIdentityAndRegisters() throws {
    var responder = makeResponder()
    let reply = try #require(responder.respond(to: [0, 0, 0], session: s1).response)
    let response = try IDEKMQueryResponse(parsing: reply)
    #expect(response.deviceFunction == 0x08 && response.bus == 0x3A && response.maxPortIndex == 0)
    #expect(response.linkStreams.count == 1 && response.selectiveStreams.count == 1)
    #expect(responder.respond(to: [0, 0, 1], session: s1).response == nil)  // no port 1
    #expect(responder.respond(to: [0, 0, 0], session: nil).response == nil)  // not in a session
  }

  @Test func keyProgramAckStatuses() throws {
    let responder = makeResponder()
    let sub = IDEKeySubStream(keySet: .k0, direction: .receive, subStream: .posted)
    let good = IDEKMKeyProgram(streamID: 1, subStream: sub, portIndex: 0, key: testKey(1)).encode()
    func status(_ bytes: [UInt8]) throws -> IDEKMKeyProgramStatus {
      var copy = responder
      return try IDEKMKeyProgramAck(parsing: try #require(copy.respond(to: bytes, session: s1).response))
        .status
    }
    #expect(try status(good) == .success)
    #expect(try status(Array(good.dropLast())) == .incorrectLength)
    #expect(try status(good + [0]) == .incorrectLength)
    var badPort = good
    badPort[6] = 1
    #expect(try status(badPort) == .unsupportedPortIndex)
    var badStream = good
    badStream[3] = 9
    #expect(try status(badStream) == .unsupportedValue)
    var badSub = good
    badSub[5] = 0x30
    #expect(try status(badSub) == .unsupportedValue)
    badSub[5] = 0x04
    #expect(try status(badSub) == .unsupportedValue)
    // The ACK echoes stream, sub-stream and port.
    var copy = responder
    #expect(copy.respond(to: badPort, session: s1).response == [0x03, 0, 0, 1, 0x02, 0x00, 0x01])
  }

  @Test func secureNeedsAllSixProgrammedAndGo() {
    var responder = makeResponder()
    #expect(responder.program(.k0, session: s1) == Array(repeating: .success, count: 6))
    let slots = IDEKeySlotID.all(in: .k0)
    for slot in slots.dropLast() {
      let out = responder.respond(
        to: IDEKMKeySetCommand.go(streamID: 1, subStream: slot.keySubStream, portIndex: 0).encode(),
        session: s1)
      #expect(
        out.response
          == IDEKMKeySetCommand(
            objectID: .keyGoStopAck, streamID: 1, subStream: slot.keySubStream, portIndex: 0
          ).encode())
      #expect(out.events.isEmpty)
    }
    #expect(responder.ports[0].endpoint.state(of: 1) == .insecure)
    let last = responder.respond(
      to: IDEKMKeySetCommand.go(streamID: 1, subStream: slots.last!.keySubStream, portIndex: 0).encode(),
      session: s1)
    #expect(last.events.map(\.event) == [.streamBecameSecure(streamID: 1, keySet: .k0)])
    #expect(responder.ports[0].endpoint.state(of: 1) == .secure(.k0))
    #expect(responder.isReady(defaultStream: 1, forSession: s1) == (true, s1))
    #expect(responder.isReady(defaultStream: 1, forSession: s2) == (false, s1))
  }

  @Test func refreshSwitchesKeySetWithoutLeavingSecure() {
    var responder = makeResponder()
    _ = responder.program(.k0, session: s1)
    _ = responder.goAll(.k0, session: s1)
    #expect(responder.program(.k1, session: s1, seed: 0x50) == Array(repeating: .success, count: 6))
    #expect(responder.ports[0].endpoint.state(of: 1) == .secure(.k0))
    #expect(responder.goAll(.k1, session: s1) == [.keySetSwitched(streamID: 1, from: .k0, to: .k1)])
    #expect(responder.ports[0].endpoint.state(of: 1) == .secure(.k1))
    // Programming the key set in use is refused.
    #expect(responder.program(.k1, session: s1).allSatisfy { $0 == .unspecifiedFailure })
  }

  @Test func stopTakesStreamInsecure() {
    var responder = makeResponder()
    _ = responder.program(.k0, session: s1)
    _ = responder.goAll(.k0, session: s1)
    let sub = IDEKeySubStream(keySet: .k0, direction: .transmit, subStream: .completion)
    let out = responder.respond(
      to: IDEKMKeySetCommand.stop(streamID: 1, subStream: sub, portIndex: 0).encode(), session: s1)
    #expect(out.response == [0x06, 0, 0, 1, 0, 0x22, 0])
    #expect(out.events.map(\.event) == [.streamBecameInsecure(streamID: 1)])
    #expect(responder.isReady(defaultStream: 1, forSession: s1).ready == false)
  }

  @Test func keysFromAnotherSessionAreRefusedUntilItEnds() throws {
    var responder = makeResponder()
    let sub = IDEKeySubStream(keySet: .k0, direction: .receive, subStream: .posted)
    let one = IDEKMKeyProgram(streamID: 1, subStream: sub, portIndex: 0, key: testKey(1)).encode()
    #expect(
      try IDEKMKeyProgramAck(parsing: responder.respond(to: one, session: s1).response!).status == .success)
    #expect(
      responder.program(.k0, session: s2) == [.unspecifiedFailure]
        + Array(repeating: .unspecifiedFailure, count: 5))
    #expect(responder.isReady(defaultStream: 1, forSession: s2) == (false, s1))
    #expect(responder.sessionEnded(s1).isEmpty)
    #expect(responder.program(.k0, session: s2) == Array(repeating: .success, count: 6))
    #expect(responder.goAll(.k0, session: s2) == [.streamBecameSecure(streamID: 1, keySet: .k0)])
    #expect(responder.sessionEnded(s2).map(\.event) == [.streamBecameInsecure(streamID: 1)])
  }

  @Test func linkCombinesBothEnds() {
    let key = testKey(7)
    let ifv: [UInt8] = [0, 0, 0, 0, 1, 0, 0, 0]
    var link = IDELink(
      device: IDEStreamEndpoint(streams: [1: .selective]),
      rootPort: IDEStreamEndpoint(streams: [1: .selective]))
    for slot in IDEKeySlotID.all(in: .k0) {
      try! link.device.program(
        streamID: 1, subStream: slot.keySubStream, key: key, initialFieldValue: ifv, session: s1)
      _ = link.device.go(streamID: 1, subStream: slot.keySubStream, session: s1)
    }
    #expect(link.device.state(of: 1) == .secure(.k0))
    #expect(!link.isSecure(streamID: 1))
    for slot in IDEKeySlotID.all(in: .k0) {
      try! link.rootPort.program(
        streamID: 1, subStream: slot.keySubStream, key: key, initialFieldValue: ifv, session: nil)
      _ = link.rootPort.go(streamID: 1, subStream: slot.keySubStream, session: nil)
    }
    #expect(link.isSecure(streamID: 1))
    #expect(link.keysAgree(streamID: 1))
    let stop = IDEKeySubStream(keySet: .k0, direction: .receive, subStream: .posted)
    #expect(
      link.rootPort.stop(streamID: 1, subStream: stop, session: nil) == [.streamBecameInsecure(streamID: 1)])
    #expect(!link.isSecure(streamID: 1))
  }
}
