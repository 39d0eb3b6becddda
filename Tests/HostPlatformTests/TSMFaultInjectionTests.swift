import CoveCrypto
import HostPlatform
import IDEKM
import IOMMU
import PCIe
import SPDM
import TDISP
import Testing

/// Faults on the DOE path between the TSM and the device. For each: what the caller sees, whether
/// the session is torn down, what state the TDI is left in, and that a fresh connect recovers
/// (SEMANTICS.md §8; DSP0277's implicit sequence numbers are why a lost or repeated secured record
/// ends the session).
@Suite struct TSMFaultInjectionTests {
  static let pf1 = TEEIORig.pf1
  static let guest = TEEIORig.guest

  /// Connected, 03:00.1 bound to the guest and unlocked: the next secured request is LOCK.
  func boundRig() throws -> TEEIORig {
    let rig = try TEEIORig()
    try rig.tsm.connect()
    try rig.tsm.bind(Self.pf1, to: Self.guest)
    return rig
  }

  /// Disconnect what is left, connect afresh, and run 03:00.1 to RUN over a secure stream.
  @discardableResult
  func recover(_ rig: TEEIORig) throws -> TSMConnection {
    rig.faults.removeAllRules()
    try rig.tsm.disconnect()
    let connection = try rig.tsm.connect()
    try rig.run(Self.pf1)
    #expect(rig.state(Self.pf1) == .run)
    #expect(rig.link.isSecure(streamID: 1) && rig.link.keysAgree(streamID: 1))
    #expect(rig.device.doe.responder.sessions.count == 1)
    return connection
  }

  func expectTornDown(_ rig: TEEIORig) {
    #expect(!rig.tsm.isConnected)
    #expect(rig.tsm.failure != nil)
    #expect(rig.rootPort.state(of: 1) == .insecure)
    #expect(throws: TSMError(.ENOTCONN, .notConnected)) { try rig.tsm.lock(Self.pf1, for: Self.guest) }
  }

  // MARK: drop

  @Test func droppedRequestTimesOutAndLeavesTheTDIUnlocked() throws {
    let rig = try boundRig()
    rig.faults.add(DOEFaultRule(.drop, .request, .secured))
    let error = try #require(throws: TSMError.self) { try rig.tsm.lock(Self.pf1, for: Self.guest) }
    #expect(error.errno == .ETIMEDOUT)
    expectTornDown(rig)
    // The TSM cannot tell whether the LOCK arrived; the device never saw it.
    #expect(rig.tsm.interface(Self.pf1)?.state == .unknown)
    #expect(rig.state(Self.pf1) == .configUnlocked)
    #expect(rig.faults.elapsedMicroseconds == DOEFaultInjector.timeoutMicroseconds)
    #expect(try recover(rig).stoppedInterfaces.isEmpty)
  }

  @Test func droppedLockResponseLeavesTheDeviceLockedUntilReconnectStopsIt() throws {
    let rig = try boundRig()
    rig.faults.add(DOEFaultRule(.drop, .response, .secured))
    let error = try #require(throws: TSMError.self) { try rig.tsm.lock(Self.pf1, for: Self.guest) }
    #expect(error.errno == .ETIMEDOUT)
    expectTornDown(rig)
    // The device did lock; the TSM does not know how far it got.
    #expect(rig.state(Self.pf1) == .configLocked)
    #expect(rig.tsm.interface(Self.pf1)?.state == .unknown)
    // Reconnecting ends the old session on the device (GET_VERSION), which takes the TDI locked
    // on its keys to ERROR; the TSM finds it there and stops it.
    let connection = try recover(rig)
    #expect(connection.stoppedInterfaces == [TDISPInterfaceID(requesterID: Self.pf1.rawValue)])
  }

  // MARK: corrupt

  @Test func corruptedRequestEndsTheSessionOnBothSides() throws {
    let rig = try boundRig()
    rig.faults.add(DOEFaultRule(.corrupt(offset: 12, mask: 0x01), .request, .secured))
    #expect(throws: TSMError(.EIO, .spdm(.responderError(.decryptError, data: 0)))) {
      try rig.tsm.lock(Self.pf1, for: Self.guest)
    }
    expectTornDown(rig)
    #expect(rig.state(Self.pf1) == .configUnlocked)
    #expect(rig.device.doe.responder.sessions.isEmpty)
    #expect(rig.device.dsm.ideKM.ports[0].endpoint.state(of: 1) == .insecure)
    try recover(rig)
  }

  @Test func corruptedRequestWhileRunningTakesTheTDIToError() throws {
    let rig = try TEEIORig()
    try rig.run(TEEIORig.pf0)
    rig.faults.add(DOEFaultRule(.corrupt(offset: 40, mask: 0x80), .request, .secured))
    #expect(throws: TSMError(.EIO, .spdm(.responderError(.decryptError, data: 0)))) {
      _ = try rig.tsm.deviceState(TEEIORig.pf0)
    }
    // The keying session ended on the device: the TDI running on its stream is in ERROR.
    #expect(rig.state(TEEIORig.pf0) == .error)
    #expect(rig.tsm.interface(TEEIORig.pf0)?.state == .unknown)
    let connection = try recover(rig)
    #expect(connection.stoppedInterfaces == [TDISPInterfaceID(requesterID: TEEIORig.pf0.rawValue)])
    #expect(rig.state(TEEIORig.pf0) == .configUnlocked)
  }

  @Test func corruptedResponseFailsAuthenticationAtTheTSM() throws {
    let rig = try boundRig()
    rig.faults.add(DOEFaultRule(.corrupt(offset: 20, mask: 0x01), .response, .secured))
    let error = try #require(throws: TSMError.self) { try rig.tsm.lock(Self.pf1, for: Self.guest) }
    guard case .spdm(.secureMessage) = error.reason else {
      Issue.record("expected a secured-message failure, got \(error)")
      return
    }
    #expect(error.errno == .EIO)
    expectTornDown(rig)
    #expect(rig.state(Self.pf1) == .configLocked)
    #expect(try recover(rig).stoppedInterfaces.count == 1)
  }

  // MARK: truncate

  @Test func truncatedRequestIsRefusedByTheDevice() throws {
    let rig = try TEEIORig()
    // GET_CAPABILITIES cut to its 4-byte header: the responder answers ERROR InvalidRequest.
    rig.faults.add(DOEFaultRule(.truncate(bytes: 4), .request, .spdm(code: 0xE1)))
    #expect(throws: TSMError(.EIO, .spdm(.responderError(.invalidRequest, data: 0)))) {
      try rig.tsm.connect()
    }
    #expect(!rig.tsm.isConnected)
    #expect(rig.device.doe.responder.sessions.isEmpty)
    #expect(rig.rootPort.state(of: 1) == .insecure)
    try recover(rig)
  }

  @Test func truncatedCertificateResponseIsMalformed() throws {
    let rig = try TEEIORig()
    rig.faults.add(DOEFaultRule(.truncate(bytes: 8), .response, .spdm(code: 0x02)))
    let error = try #require(throws: TSMError.self) { try rig.tsm.connect() }
    guard case .spdm(.malformedResponse) = error.reason else {
      Issue.record("expected a malformed CERTIFICATE, got \(error)")
      return
    }
    #expect(!rig.tsm.isConnected)
    try recover(rig)
  }

  // MARK: duplicate

  @Test func duplicatedLockRequestReplaysASequenceNumberAndEndsTheSession() throws {
    let rig = try boundRig()
    rig.faults.add(DOEFaultRule(.duplicate, .request, .secured))
    // The first copy locks; the second reuses its sequence number, so the device answers
    // DecryptError and ends the session: the freshly locked TDI goes to ERROR. The TSM reads that
    // ERROR as the answer to its first report request.
    #expect(throws: TSMError(.EIO, .spdm(.responderError(.decryptError, data: 0)))) {
      try rig.tsm.lock(Self.pf1, for: Self.guest)
    }
    expectTornDown(rig)
    #expect(rig.state(Self.pf1) == .error)
    #expect(rig.device.doe.responder.sessions.isEmpty)
    #expect(try recover(rig).stoppedInterfaces.count == 1)
  }

  @Test func duplicatedResponseIsReadAsTheAnswerToTheNextRequest() throws {
    let rig = try TEEIORig()
    rig.faults.add(DOEFaultRule(.duplicate, .response, .spdm(code: 0x04)))  // VERSION
    #expect(throws: TSMError(.EIO, .spdm(.unexpectedResponse(expected: .capabilities, got: 0x04)))) {
      try rig.tsm.connect()
    }
    #expect(!rig.tsm.isConnected)
    // The fresh connect's DOE Abort drops the stale answer.
    try recover(rig)
  }

  // MARK: replay

  @Test func replayedRequestIsAnOldSequenceNumber() throws {
    let rig = try boundRig()
    rig.faults.add(DOEFaultRule(.replay(back: 1), .request, .secured))
    #expect(throws: TSMError(.EIO, .spdm(.responderError(.decryptError, data: 0)))) {
      try rig.tsm.lock(Self.pf1, for: Self.guest)
    }
    expectTornDown(rig)
    #expect(rig.state(Self.pf1) == .configUnlocked)
    try recover(rig)
  }

  @Test func requestReplayedFromAnEndedSessionGetsNoAnswer() throws {
    let rig = try boundRig()
    func securedRequestsSent() -> Int {
      rig.tsm.transport.requestHistory.filter { $0.type == DOEDataObjectType.securedSPDM.rawValue }.count
    }
    let oldLock = securedRequestsSent() + 1
    try rig.tsm.lock(Self.pf1, for: Self.guest)
    try rig.tsm.disconnect()
    try rig.tsm.connect()
    try rig.tsm.bind(Self.pf1, to: Self.guest)
    // Replace the new session's LOCK with the old session's: no session to open it with, so the
    // device's mailbox reports ERROR and nothing changes on the device.
    rig.faults.add(DOEFaultRule(.replay(back: securedRequestsSent() - oldLock + 1), .request, .secured))
    let error = try #require(throws: TSMError.self) { try rig.tsm.lock(Self.pf1, for: Self.guest) }
    guard case .spdm(.transport(let what)) = error.reason else {
      Issue.record("expected a DOE error, got \(error)")
      return
    }
    #expect(what.contains("DOE ERROR"))
    #expect(rig.state(Self.pf1) == .configUnlocked)
    #expect(rig.device.doe.responder.unansweredRecords == 1)
    #expect(rig.device.doe.responder.sessions.count == 1)
    try recover(rig)
  }

  @Test func replayedResponseFailsAuthenticationAtTheTSM() throws {
    let rig = try boundRig()
    rig.faults.add(DOEFaultRule(.replay(back: 1), .response, .secured))
    let error = try #require(throws: TSMError.self) { try rig.tsm.lock(Self.pf1, for: Self.guest) }
    guard case .spdm(.secureMessage) = error.reason else {
      Issue.record("expected a secured-message failure, got \(error)")
      return
    }
    expectTornDown(rig)
    #expect(rig.state(Self.pf1) == .configLocked)
    #expect(try recover(rig).stoppedInterfaces.count == 1)
  }

  // MARK: delay

  @Test func delayWithinTheTimeoutOnlyCostsTime() throws {
    let rig = try boundRig()
    rig.faults.add(DOEFaultRule(.delay(microseconds: 400_000), .response, .secured, occurrence: .every))
    try rig.tsm.lock(Self.pf1, for: Self.guest)
    try rig.tsm.start(Self.pf1, for: Self.guest)
    #expect(rig.state(Self.pf1) == .run)
    // LOCK, one report portion, START: three responses, 0.4 s each.
    #expect(rig.faults.elapsedMicroseconds == 1_200_000)
    #expect(rig.tsm.isConnected)
  }

  @Test func delayPastTheTimeoutIsATimeoutAndTheLateAnswerIsDiscarded() throws {
    let rig = try boundRig()
    rig.faults.add(DOEFaultRule(.delay(microseconds: 2_000_000), .response, .secured))
    let error = try #require(throws: TSMError.self) { try rig.tsm.lock(Self.pf1, for: Self.guest) }
    #expect(error.errno == .ETIMEDOUT)
    expectTornDown(rig)
    #expect(rig.state(Self.pf1) == .configLocked)
    // The late LOCK response must not be taken for the reconnect's VERSION.
    #expect(try recover(rig).stoppedInterfaces.count == 1)
  }

  // MARK: reorder

  @Test func reorderedRequestTimesOutUnderStrictRequestResponse() throws {
    let rig = try boundRig()
    rig.faults.add(DOEFaultRule(.reorder, .request, .secured))
    let error = try #require(throws: TSMError.self) { try rig.tsm.lock(Self.pf1, for: Self.guest) }
    #expect(error.errno == .ETIMEDOUT)
    expectTornDown(rig)
    #expect(rig.state(Self.pf1) == .configUnlocked)
    try recover(rig)
  }

  @Test func reorderedResponseTimesOutAndTheDeviceIsLocked() throws {
    let rig = try boundRig()
    rig.faults.add(DOEFaultRule(.reorder, .response, .secured))
    let error = try #require(throws: TSMError.self) { try rig.tsm.lock(Self.pf1, for: Self.guest) }
    #expect(error.errno == .ETIMEDOUT)
    expectTornDown(rig)
    #expect(rig.state(Self.pf1) == .configLocked)
    #expect(try recover(rig).stoppedInterfaces.count == 1)
  }
}
