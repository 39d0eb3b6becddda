import HostPlatform
import IDEKM
import IOMMU
import PCIe
import SPDM
import TDISP
import Testing

/// `ide: .required | .off` and what connect reports step by step, against a DSM whose IDE_KM QUERY
/// answer is replaced: by DMTF libspdm's sample answer (IDE Capability 0 and 288 zero bytes), by
/// one with a non-zero surplus, one for another port, and the device's own answer padded with zeros.
@Suite struct HostTSMIDEPolicyTests {
  /// The exact QUERY_RESP DMTF `spdm_responder_emu` sends for port 0 (303 bytes; see
  /// IDEKMQueryResponseSurplusTests).
  static let dmtfQueryResponse: [UInt8] =
    [0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07] + [UInt8](repeating: 0, count: 74 * 4)

  /// A rig whose device answers IDE_KM QUERY with `query(theDevicesOwnAnswer)`; every connect event
  /// is recorded.
  final class Recorder {
    var events: [TSMConnectEvent] = []
    var steps: [TSMConnectStep] {
      events.compactMap { if case .starting(let step) = $0 { step } else { nil } }
    }
  }

  func rig(
    ide: TSMIDEPolicy = .required, query: (([UInt8]) -> [UInt8])? = nil
  ) throws -> (TEEIORig, Recorder) {
    let rig = try TEEIORig { $0.ide = ide }
    if let query {
      rig.device.dsm.responseTamper = { request, response in
        guard request.protocolID == .ideKM, request.message.first == IDEKMObjectID.query.rawValue else {
          return response
        }
        return PCISIGProtocolMessage(protocolID: .ideKM, message: query(response.message))
      }
    }
    let recorder = Recorder()
    rig.tsm.onConnectEvent = { recorder.events.append($0) }
    return (rig, recorder)
  }

  static let stepsThroughQuery: [TSMConnectStep] = [
    .doeDiscovery, .vca, .certificateChain, .measurements, .session, .tdispVersion, .tdispCapabilities,
    .ideQuery,
  ]

  @Test func requiredRefusesTheDMTFSampleAnswerSayingItHasNoSelectiveStream() throws {
    let (rig, recorder) = try rig { _ in Self.dmtfQueryResponse }
    #expect(
      throws: TSMError(
        .EIO,
        .ideKeyProgramming(
          "the device has no Selective IDE stream: QUERY_RESP for port 0 has IDE Capability 0x00000000 (Selective IDE Streams Supported is 0, no Link IDE either), so selective stream 1 cannot be keyed; for a link without IDE use --ide off"
        ))
    ) { try rig.tsm.connect() }
    // Every step through QUERY passed; key programming is where it stopped, before any KEY_PROG.
    #expect(recorder.steps == Self.stepsThroughQuery + [.ideKeyProgramming])
    let queried = recorder.events.compactMap { if case .ideQueried(let answer) = $0 { answer } else { nil } }
    #expect(queried.map(\.zeroSurplus) == [288])
    #expect(rig.tsm.messages.filter { $0.protocolID == .ideKM }.count == 1)
    // A usable-but-refused answer ends the session (END_SESSION), it does not just drop it.
    #expect(!rig.tsm.isConnected)
    #expect(rig.device.doe.responder.sessions.isEmpty)
    #expect(rig.tsm.failure?.errno == .EIO)
    #expect(rig.tsm.keySet == nil)
    #expect(!rig.link.isSecure(streamID: 1))
  }

  @Test func aNonZeroSurplusIsMalformedAndSaysWhere() throws {
    let (rig, recorder) = try rig { _ in
      var bytes = Self.dmtfQueryResponse
      bytes[100] = 0xFF
      return bytes
    }
    #expect(
      throws: TSMError(
        .EIO,
        .ideKeyProgramming(
          "QUERY_RESP (303 bytes) malformed: trailing bytes at byte 15 (QUERY_RESP: 288 bytes beyond the register blocks IDE Capability 0x00000000 describes (0 Link IDE, 0 Selective IDE))"
        ))
    ) { try rig.tsm.connect() }
    #expect(recorder.steps == Self.stepsThroughQuery)
  }

  @Test func anAnswerForAnotherPortNamesBothPorts() throws {
    let (rig, _) = try rig { answer in
      var bytes = answer
      bytes[2] = 3
      return bytes
    }
    #expect(throws: TSMError(.EIO, .ideKeyProgramming("QUERY_RESP is for port 3, asked for port 0"))) {
      try rig.tsm.connect()
    }
  }

  @Test func theDevicesOwnAnswerPaddedWithZerosStillKeysTheStream() throws {
    let (rig, recorder) = try rig { $0 + [UInt8](repeating: 0, count: 12) }
    let connection = try rig.tsm.connect()
    #expect(connection.ideQuery?.zeroSurplus == 12)
    #expect(connection.keySet == .k0)
    #expect(rig.link.isSecure(streamID: 1))
    #expect(recorder.steps == Self.stepsThroughQuery + [.ideKeyProgramming, .interfaceStates])
  }

  /// Off: no IDE_KM message; connect completes (TDISP version, capabilities, TDI states) with no
  /// stream keyed. Cove's device then refuses LOCK with INVALID_REQUEST (its default stream is not
  /// keyed through this session, PCIe 6.x §11.3.9): a refusal, so the session stays up, the TDI stays
  /// unlocked on both sides, and disconnect is clean.
  @Test func offSendsNoIDEKMAndCovesDeviceRefusesLock() throws {
    let (rig, recorder) = try rig(ide: .off)
    let connection = try rig.tsm.connect()
    #expect(connection.ideQuery == nil)
    #expect(connection.keySet == nil)
    #expect(
      recorder.steps == [
        .doeDiscovery, .vca, .certificateChain, .measurements, .session, .tdispVersion, .tdispCapabilities,
        .interfaceStates,
      ])
    #expect(recorder.events.contains { if case .ideSkipped = $0 { true } else { false } })
    let pf1 = TEEIORig.pf1
    try rig.tsm.bind(pf1, to: TEEIORig.guest)
    #expect(throws: TSMError(.EIO, .device(.invalidRequest, data: 0))) {
      try rig.tsm.lock(pf1, for: TEEIORig.guest)
    }
    #expect(rig.tsm.isConnected)
    #expect(rig.state(pf1) == .configUnlocked)
    #expect(rig.tsm.interface(pf1)?.state == .unlocked)
    #expect(try rig.tsm.isReadyForTrustedDMA(pf1) == false)
    #expect(throws: TSMError(.EINVAL, .invalidState("no IDE stream is keyed on this connection (ide: off)")))
    {
      try rig.tsm.refreshKeys()
    }
    try rig.tsm.unbind(pf1, from: TEEIORig.guest)
    try rig.tsm.disconnect()
    #expect(rig.tsm.messages.allSatisfy { $0.protocolID == .tdisp })
    #expect(!rig.link.isSecure(streamID: 1))
  }
}
