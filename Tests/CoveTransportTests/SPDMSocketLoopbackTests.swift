import CoveCrypto
import CoveScenario
import CoveTransport
import HostPlatform
import IDEKM
import PCIe
import SPDM
import TDISP
import Testing

/// A Cove device behind `cove responder` and the pieces `cove tsm` needs to trust it.
struct SocketRig {
  let core: SPDMSocketResponderCore
  let policy: SPDMRequesterPolicy
  let configuration: TSMDeviceConfiguration
  var interface: RequesterID { configuration.interfaces[1] }

  init(binding: SPDMSocketBinding) throws {
    let image = try GuestImage(yaml: BuiltInImages.defaultImage, file: "default.yaml")
    let spec = image.devices[0]
    let identity = try SPDMSocketDeviceIdentity(spec: spec)
    let device = try CoveDMADevice(spec: spec, identity: identity, entropy: SeededEntropy(seed: 7))
    core = SPDMSocketResponderCore(device: device, binding: binding)
    var policy = SPDMRequesterPolicy(trustAnchors: [identity.certificateChain[0]])
    policy.validationTime = BuiltInDevice.notBefore + 86_400
    for block in identity.measurements {
      if let value = block.dmtf?.value { policy.referenceMeasurements[block.index] = value }
    }
    self.policy = policy
    configuration = device.tsmConfiguration
  }

  func state(_ function: RequesterID) -> TDIState? { core.device.tdisp.tdi(function)?.state }
}

@Suite(.serialized) struct SPDMSocketLoopbackTests {
  /// Cove's TSM against Cove's responder over a real loopback TCP socket, on each transport: VCA,
  /// certificates, measurements, session, IDE_KM, TDISP lock/report/start/stop, disconnect.
  @Test(arguments: SPDMSocketBinding.allCases)
  func wholeFlowOverLoopback(binding: SPDMSocketBinding) throws {
    let rig = try SocketRig(binding: binding)
    let server = try SPDMSocketResponder(core: rig.core, port: 0)
    defer { server.shutdown() }
    let connection = try SPDMSocketConnection(host: "127.0.0.1", port: server.port, binding: binding)
    var lines: [String] = []
    let result = try SPDMSocketTSMFlow.run(
      transport: SPDMSocketTSMTransport(connection: connection), configuration: rig.configuration,
      interface: rig.interface, policy: rig.policy, entropy: SeededEntropy(seed: 9), log: { lines.append($0) }
    )
    try connection.end(.shutdown)
    server.wait()

    #expect(result.connection?.certificateChain.count == 3)
    #expect(result.connection?.measurements.blocks.count == 5)
    #expect(result.observedStates == [.configLocked, .run, .configUnlocked])
    #expect(result.report?.report.mmioRanges.isEmpty == false)
    #expect(result.sessionSecrets.count == 1)
    if binding == .doe {
      #expect(result.connection?.doeProtocols == [.discovery, .spdm, .securedSPDM])
    }
    server.withCore { core in
      // The device's own view afterwards: every TDI unlocked, the stream's keys stopped.
      for function in core.device.tdisp.functionIDs {
        #expect(core.device.tdisp.tdi(function)?.state == .configUnlocked)
      }
      #expect(!core.device.tdisp.dsm.ideKM.ports[0].endpoint.state(of: rig.configuration.streamID).isSecure)
      // The trace shows the TDI going through LOCKED and RUN, and the stream through SECURE.
      let states = core.recorder.records.filter { $0.kind == .state }.map(\.summary)
      let tdi = "TDI \(rig.interface.bdf())"
      #expect(
        states.filter { $0.hasPrefix(tdi) } == [
          "\(tdi) CONFIG_UNLOCKED → CONFIG_LOCKED", "\(tdi) CONFIG_LOCKED → RUN",
          "\(tdi) RUN → CONFIG_UNLOCKED",
        ])
      #expect(states.contains("IDE port 0 stream \(rig.configuration.streamID) INSECURE → SECURE(K0)"))
      #expect(states.contains("IDE port 0 stream \(rig.configuration.streamID) SECURE(K0) → INSECURE"))
      #expect(core.sessionSecrets.count == 1)
      #expect(core.sessionSecrets.first?.data != nil)
      #expect(core.peerErrors.isEmpty)
      // The capture: DOE objects (NONE's messages wrapped as DOE would carry them) that Cove's decoder
      // opens with the key log, TDISP inside; MCTP records as spdm-emu writes them.
      let pcap = core.pcap()
      let linkType = pcap[20..<24].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
      if binding == .mctp {
        #expect(linkType == 291)
        // The first record: 16-byte record header, MCTP header 00 00 00 C0, type 0x05, GET_VERSION.
        #expect(Array(pcap[40..<47]) == [0, 0, 0, 0xC0, 0x05, 0x10, 0x84])
      } else {
        #expect(linkType == 292)
        let keys = try? SessionKeysFile.parse(SessionKeysFile.write(core.sessionSecrets))
        #expect(keys == core.sessionSecrets)
        let decoded = try? TraceDecoder.decode(pcap: pcap, sessions: core.sessionSecrets)
        #expect(decoded?.messages.allSatisfy { $0.problem == nil } == true)
        #expect(decoded?.lines.contains { $0.contains("TDISP START_INTERFACE") } == true)
      }
    }
    #expect(lines.contains { $0.hasPrefix("START_INTERFACE") && $0.hasSuffix("RUN") })
  }

  @Test func continueThenSecondConnection() throws {
    let rig = try SocketRig(binding: .doe)
    let server = try SPDMSocketResponder(core: rig.core, port: 0)
    defer { server.shutdown() }
    let first = try SPDMSocketConnection(host: "127.0.0.1", port: server.port, binding: .doe)
    _ = try SPDMSocketTSMFlow.run(
      transport: SPDMSocketTSMTransport(connection: first), configuration: rig.configuration,
      interface: rig.interface, policy: rig.policy, entropy: SeededEntropy(seed: 1))
    try first.end(.continue)
    let second = try SPDMSocketConnection(host: "127.0.0.1", port: server.port, binding: .doe)
    let result = try SPDMSocketTSMFlow.run(
      transport: SPDMSocketTSMTransport(connection: second), configuration: rig.configuration,
      interface: rig.interface, policy: rig.policy, entropy: SeededEntropy(seed: 2))
    #expect(result.observedStates == [.configLocked, .run, .configUnlocked])
    try second.end(.shutdown)
    server.wait()
  }
}
