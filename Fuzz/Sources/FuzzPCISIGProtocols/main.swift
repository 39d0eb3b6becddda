import CoveCrypto
import CoveWire
// libFuzzer entry point for the PCI-SIG protocols carried inside SPDM sessions: every TDISP and
// IDE_KM decoder (round trip: what decodes must re-encode to something that decodes the same), then
// the device-side state machines fed a sequence of the input's messages. The TDI and the IDE_KM
// responder may refuse anything; they may not crash, and their invariants must hold after each
// message: a START nonce exists exactly in CONFIG_LOCKED, a SECURE stream has a whole key set in use.
import FuzzSupport
import IDEKM
import SPDM
import TDISP

runLibFuzzer(fuzzInput)

func fuzzInput(_ input: [UInt8]) {
  guard let selector = input.first else { return }
  let bytes = Array(input.dropFirst())
  roundTrip(bytes, { b throws(WireError) in try TDISPRequest(parsing: b) }, { $0.encode() })
  roundTrip(bytes, { b throws(WireError) in try TDISPResponse(parsing: b) }, { $0.encode() })
  roundTrip(bytes, { b throws(WireError) in try TDISPDeviceInterfaceReport(parsing: b) }, { $0.encode() })
  roundTrip(bytes, { b throws(WireError) in try IDEKMQuery(parsing: b) }, { $0.encode() })
  roundTrip(bytes, { b throws(WireError) in try IDEKMQueryResponse(parsing: b) }, { $0.encode() })
  roundTrip(bytes, { b throws(WireError) in try IDEKMKeyProgram(parsing: b) }, { $0.encode() })
  roundTrip(bytes, { b throws(WireError) in try IDEKMKeyProgramAck(parsing: b) }, { $0.encode() })
  roundTrip(bytes, { b throws(WireError) in try IDEKMKeySetCommand(parsing: b) }, { $0.encode() })
  roundTrip(bytes, { b throws(WireError) in try IDEKMMessage(parsing: b) }, { $0.encode() })
  roundTrip(
    bytes,
    { b throws(WireError) in try PCISIGProtocolMessage(standardID: 3, vendorID: [1, 0], payload: b) },
    { $0.payload })

  // Stateful: the rest of the input is a sequence of length-prefixed messages (1-byte length);
  // selector bit 0 picks IDE_KM or TDISP for the first, and each message's first bit after that.
  var tdi = TDI(
    interfaceID: TDISPInterfaceID(requesterID: 0x0300),
    capabilities: TDISPCapabilities(
      supportedRequests: TDISPRequestCode.allKnown,
      lockInterfaceFlagsSupported: [.noFirmwareUpdate, .lockMSIX],
      deviceAddressWidth: 52),
    report: TDISPDeviceInterfaceReport(
      interfaceInfo: [.dmaWithoutPASID],
      mmioRanges: [
        TDISPMMIORange(
          firstPage: 0x1000, numberOfPages: 1, attributes: .isMemoryAttributeUpdatable, rangeID: 0)
      ]),
    entropy: SeededEntropy(seed: 1))
  var ide = IDEKMResponder(ports: [
    IDEKMPort(
      deviceFunction: 0, bus: 3, capability: IDECapabilityRegister(linkStreams: 0, selectiveStreams: 1),
      selectiveBlocks: [.init()], streams: [1: .selective])
  ])
  var rest = bytes[...]
  var toTDISP = selector & 1 == 1
  while let length = rest.first {
    rest = rest.dropFirst()
    let message = Array(rest.prefix(Int(length)))
    rest = rest.dropFirst(Int(length))
    if toTDISP, let request = try? TDISPRequest(parsing: message) {
      let context = TDIRequestContext(
        ideKeysReadyForDefaultStream: ide.isReady(defaultStream: 1, forSession: IDEKMSessionID(7)).ready,
        ideKeysFromThisSession: selector & 2 == 0, deviceConfigurationValid: selector & 4 == 0)
      _ = tdi.handle(request, context: context).encode()
    } else {
      let output = ide.respond(to: message, session: selector & 8 == 0 ? IDEKMSessionID(7) : nil)
      for event in output.events where event.event == .streamBecameInsecure(streamID: 1) {
        tdi.enterError(because: .ideStreamInsecure)
      }
    }
    precondition(tdi.hasStartNonce == (tdi.state == .configLocked), "START nonce outside CONFIG_LOCKED")
    for stream in ide.ports[0].endpoint.streams.values {
      if case .secure(let set) = stream.state {
        precondition(stream.isComplete(set), "SECURE stream without a whole key set in use")
      }
    }
    toTDISP = message.first.map { $0 & 1 == 1 } ?? !toTDISP
  }
}
