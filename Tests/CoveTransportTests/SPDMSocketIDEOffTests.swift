import CoveCrypto
import CoveScenario
import CoveTransport
import HostPlatform
import IOMMU
import PCIe
import SPDM
import TDISP
import Testing

/// `cove tsm --ide off` against Cove's own `cove responder` over loopback TCP: no IDE_KM message is
/// sent and the TDISP flow runs until LOCK, which Cove's device refuses with INVALID_REQUEST because
/// its default stream is not keyed through this session (PCIe 6.x §11.3.9; DMTF's sample device does
/// not check and locks). The failure names the step, what passed, and the hint.
@Suite(.serialized) struct SPDMSocketIDEOffTests {
  @Test(arguments: [SPDMSocketBinding.doe, .mctp])
  func ideOffRunsTDISPUntilCovesDeviceRefusesLock(binding: SPDMSocketBinding) throws {
    let rig = try SocketRig(binding: binding)
    var configuration = rig.configuration
    configuration.ide = .off
    let server = try SPDMSocketResponder(core: rig.core, port: 0)
    defer { server.shutdown() }
    let connection = try SPDMSocketConnection(host: "127.0.0.1", port: server.port, binding: binding)
    var lines: [String] = []
    var failure: (step: String, passed: [String])?
    let refusal = TSMError(.EIO, .device(.invalidRequest, data: 0))
    #expect(throws: refusal) {
      _ = try SPDMSocketTSMFlow.run(
        transport: SPDMSocketTSMTransport(connection: connection), configuration: configuration,
        interface: rig.interface, policy: rig.policy, entropy: SeededEntropy(seed: 11),
        log: { lines.append($0) }, failure: { failure = ($0, $1) })
    }
    // A TDISP_ERROR leaves the session up: the connection can still be ended cleanly.
    try connection.end(.shutdown)
    server.wait()

    #expect(failure?.step == "LOCK_INTERFACE \(rig.interface.bdf())")
    #expect(
      failure?.passed == [
        TSMConnectStep.doeDiscovery.description, TSMConnectStep.vca.description,
        TSMConnectStep.certificateChain.description, TSMConnectStep.measurements.description,
        TSMConnectStep.session.description, TSMConnectStep.tdispVersion.description,
        TSMConnectStep.tdispCapabilities.description, "IDE_KM (skipped: --ide off)",
        TSMConnectStep.interfaceStates.description,
      ])
    #expect(
      lines.contains("IDE_KM: skipped (--ide off): no stream keyed, the link carries TDISP without IDE"))
    #expect(
      SPDMSocketTSMFlow.hint(for: refusal, at: failure?.step ?? "", configuration: configuration)
        == "with --ide off stream \(configuration.streamID) is not keyed, and a device that requires its default stream keyed through this session before LOCK (PCIe 6.x §11.3.9) refuses it: use --ide required"
    )
    server.withCore { core in
      // The device: no IDE_KM at all, every TDI still CONFIG_UNLOCKED, the stream never SECURE.
      let states = core.recorder.records.filter { $0.kind == .state }.map(\.summary)
      #expect(!states.contains { $0.hasPrefix("IDE port") })
      for function in core.device.tdisp.functionIDs {
        #expect(core.device.tdisp.tdi(function)?.state == .configUnlocked)
      }
      #expect(core.peerErrors.isEmpty)
      // The flow ended the session the refusal left up.
      #expect(core.device.tdisp.spdmResponder.sessions.isEmpty)
    }
  }

  /// With IDE required, each step's line is logged in order, and a failure names the step and what
  /// passed: here a TDI the device does not have (DMTF's sample answers so for 03:00.1).
  @Test func aFailureNamesTheStepAndWhatPassed() throws {
    let rig = try SocketRig(binding: .doe)
    var configuration = rig.configuration
    let missing = BDF(bus: 0x03, device: 0x1F, function: 7).requesterID
    configuration.interfaces.append(missing)
    let server = try SPDMSocketResponder(core: rig.core, port: 0)
    defer { server.shutdown() }
    let connection = try SPDMSocketConnection(host: "127.0.0.1", port: server.port, binding: .doe)
    var failure: (step: String, passed: [String])?
    var lines: [String] = []
    #expect(throws: TSMError(.EIO, .device(.invalidInterface, data: 0))) {
      _ = try SPDMSocketTSMFlow.run(
        transport: SPDMSocketTSMTransport(connection: connection), configuration: configuration,
        interface: rig.interface, policy: rig.policy, entropy: SeededEntropy(seed: 12),
        log: { lines.append($0) }, failure: { failure = ($0, $1) })
    }
    connection.close()
    #expect(failure?.step == "GET_DEVICE_INTERFACE_STATE of TDI 03:1f.7")
    #expect(
      failure?.passed
        == [
          TSMConnectStep.doeDiscovery, .vca, .certificateChain, .measurements, .session, .tdispVersion,
          .tdispCapabilities, .ideQuery, .ideKeyProgramming,
        ].map(\.description))
    #expect(
      lines.contains { $0.hasPrefix("certificate chain: 3 certificates") && $0.contains("(anchor 1 of 1)") })
    #expect(lines.contains { $0.hasPrefix("IDE_KM: KEY_PROG ×6 and K_SET_GO ×6 on stream") })
  }
}
