import CoveCrypto
import CoveWire
import HostPlatform
import IDEKM
import SPDM
import TDISP
import Testing

/// The DSM behind an SPDM responder: IDE_KM keys a stream, TDISP locks, reports, starts and stops two
/// functions' TDIs, all inside the secured session (PCIe 6.x §6.33, §11; SEMANTICS.md §7).
@Suite struct DeviceSecurityManagerTests {
  static let functions: [UInt16] = [0x0300, 0x0301]  // 03:00.0 (the DSM) and 03:00.1
  static let defaultStream: UInt8 = 1

  struct Rig {
    var driver: SPDMRequesterDriver<DirectSPDMTransport>
    let dsm: DeviceSecurityManager
    var sessionID: UInt32
  }

  func rig() throws -> Rig {
    let pki = try TestPKI.generate(entropy: SeededEntropy(seed: 4), notBefore: 1_735_689_600)
    let report = TDISPDeviceInterfaceReport(
      interfaceInfo: [.dmaWithoutPASID],
      mmioRanges: [TDISPMMIORange(firstPage: 0xE000_0000, numberOfPages: 4, attributes: [], rangeID: 0)])
    let tdis = Self.functions.map { rid in
      TDI(
        interfaceID: TDISPInterfaceID(requesterID: rid),
        capabilities: TDISPCapabilities(
          supportedRequests: TDISPRequestCode.allKnown,
          lockInterfaceFlagsSupported: [.noFirmwareUpdate, .lockMSIX],
          deviceAddressWidth: 52),
        report: report, entropy: SeededEntropy(seed: UInt64(rid)))
    }
    let ideKM = IDEKMResponder(ports: [
      IDEKMPort(
        deviceFunction: 0x00, bus: 0x03,
        capability: IDECapabilityRegister(linkStreams: 0, selectiveStreams: 1),
        selectiveBlocks: [.init()], streams: [Self.defaultStream: .selective])
    ])
    let dsm = DeviceSecurityManager(ideKM: ideKM, tdis: tdis)
    var responder = SPDMResponder(
      configuration: SPDMResponderConfiguration(
        certificateChain: pki.chainRootToLeaf, signingKey: pki.deviceKey, measurements: []),
      entropy: SeededEntropy(seed: 5))
    responder.vendorDefinedHandler = dsm
    var policy = SPDMRequesterPolicy(trustAnchors: [pki.root])
    policy.validationTime = 1_767_225_600
    var driver = SPDMRequesterDriver(
      requester: SPDMRequester(policy: policy, entropy: SeededEntropy(seed: 6)),
      transport: DirectSPDMTransport(responder: responder))
    try driver.initializeConnection()
    try driver.retrieveCertificateChain()
    let sessionID = try driver.startSession(summaryType: .none)
    return Rig(driver: driver, dsm: dsm, sessionID: sessionID)
  }

  func send(_ rig: inout Rig, _ message: PCISIGProtocolMessage, session: Bool = true) throws
    -> PCISIGProtocolMessage
  {
    let response = try rig.driver.vendorDefined(
      standardID: PCISIGProtocolMessage.standardID, vendorID: PCISIGProtocolMessage.vendorID,
      payload: message.payload, sessionID: session ? rig.sessionID : nil)
    return try PCISIGProtocolMessage(response)
  }

  func tdisp(_ rig: inout Rig, _ rid: UInt16, _ body: TDISPRequest.Body) throws -> TDISPResponse.Body {
    let request = TDISPRequest(interfaceID: TDISPInterfaceID(requesterID: rid), body: body)
    let answer = try send(&rig, PCISIGProtocolMessage(protocolID: .tdisp, message: request.encode()))
    #expect(answer.protocolID == .tdisp)
    return try TDISPResponse(parsing: answer.message).body
  }

  /// 6 KEY_PROG + 6 K_SET_GO for key set K0 of the default stream (PCIe 6.x §6.33.3).
  func programStream(_ rig: inout Rig) throws {
    for slot in IDEKeySlotID.all(in: .k0) {
      let key = IDEKey(aes256: [UInt8](repeating: slot.keySubStream.rawValue, count: 32))
      let program = IDEKMKeyProgram(
        streamID: Self.defaultStream, subStream: slot.keySubStream, portIndex: 0, key: key)
      let ack = try send(&rig, PCISIGProtocolMessage(protocolID: .ideKM, message: program.encode()))
      #expect(try IDEKMKeyProgramAck(parsing: ack.message).status == .success)
    }
    for slot in IDEKeySlotID.all(in: .k0) {
      let go = IDEKMKeySetCommand.go(streamID: Self.defaultStream, subStream: slot.keySubStream, portIndex: 0)
      _ = try send(&rig, PCISIGProtocolMessage(protocolID: .ideKM, message: go.encode()))
    }
  }

  @Test func lockReportStartStopOnTwoFunctions() throws {
    var rig = try rig()
    // LOCK before keys: refused (PCIe §11.3.8: default stream keys must be programmed).
    let lock = TDISPRequest.Body.lockInterface(
      TDISPLockInterfaceParameters(flags: [.noFirmwareUpdate], defaultStreamID: Self.defaultStream))
    guard case .error(let early) = try tdisp(&rig, 0x0300, lock) else {
      Issue.record("LOCK without IDE keys must fail")
      return
    }
    #expect(early.code == .invalidRequest)
    try programStream(&rig)
    #expect(
      rig.dsm.ideKM.isReady(defaultStream: Self.defaultStream, forSession: IDEKMSessionID(rig.sessionID))
        .ready)
    for rid in Self.functions {
      guard case .lockInterface(let nonce) = try tdisp(&rig, rid, lock) else {
        Issue.record("LOCK of \(rid) failed")
        return
      }
      #expect(nonce.count == 32)
      #expect(rig.dsm.tdi(UInt32(rid))?.state == .configLocked)
      guard
        case .deviceInterfaceReport(let portion) = try tdisp(
          &rig, rid, .getDeviceInterfaceReport(offset: 0, length: 0x100))
      else {
        Issue.record("report of \(rid) failed")
        return
      }
      let report = try TDISPDeviceInterfaceReport(parsing: portion.portion)
      #expect(report.mmioRanges.first?.firstPage == 0xE000_0000)
      guard case .startInterface = try tdisp(&rig, rid, .startInterface(nonce: nonce)) else {
        Issue.record("START of \(rid) failed")
        return
      }
      #expect(rig.dsm.tdi(UInt32(rid))?.state == .run)
    }
    guard case .deviceInterfaceState(let state) = try tdisp(&rig, 0x0301, .getDeviceInterfaceState) else {
      Issue.record("state query failed")
      return
    }
    #expect(state == .run)
    for rid in Self.functions {
      guard case .stopInterface = try tdisp(&rig, rid, .stopInterface) else {
        Issue.record("STOP of \(rid) failed")
        return
      }
      #expect(rig.dsm.tdi(UInt32(rid))?.state == .configUnlocked)
    }
  }

  @Test func tdispOutsideTheSessionGetsNoAnswer() throws {
    var rig = try rig()
    let request = TDISPRequest(
      interfaceID: TDISPInterfaceID(requesterID: 0x0300), body: .getDeviceInterfaceState)
    #expect(throws: SPDMRequesterError.timeout("no response")) {
      _ = try send(&rig, PCISIGProtocolMessage(protocolID: .tdisp, message: request.encode()), session: false)
    }
    #expect(rig.dsm.unansweredOutsideSession == 1)
  }

  @Test func endingTheKeyingSessionTakesLockedTDIsToError() throws {
    var rig = try rig()
    try programStream(&rig)
    let lock = TDISPRequest.Body.lockInterface(
      TDISPLockInterfaceParameters(flags: [], defaultStreamID: Self.defaultStream))
    _ = try tdisp(&rig, 0x0300, lock)
    #expect(rig.dsm.tdi(0x0300)?.state == .configLocked)
    #expect(rig.dsm.tdi(0x0301)?.state == .configUnlocked)
    try rig.driver.endSession(sessionID: rig.sessionID)
    // SEMANTICS.md §7: the session that programmed the keys ended → the locked TDI goes to ERROR;
    // the unlocked one is untouched.
    #expect(rig.dsm.tdi(0x0300)?.state == .error)
    #expect(rig.dsm.tdi(0x0301)?.state == .configUnlocked)
  }

  @Test func unknownInterfaceIsInvalidInterface() throws {
    var rig = try rig()
    guard case .error(let error) = try tdisp(&rig, 0x0302, .getDeviceInterfaceState) else {
      Issue.record("expected TDISP_ERROR")
      return
    }
    #expect(error.code == .invalidInterface)
  }
}
