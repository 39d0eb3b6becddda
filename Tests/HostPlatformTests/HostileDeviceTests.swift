import HostPlatform
import IDEKM
import IOMMU
import PCIe
import SPDM
import TDISP
import Testing

/// A DSM that lies, inside a valid session: the TSM refuses what it says, never crashes or loops,
/// and keeps its own state consistent with what the device may have done.
@Suite struct HostileDeviceTests {
  static let pf1 = TEEIORig.pf1
  static let guest = TEEIORig.guest

  func rig(tamper: @escaping (TDISPRequest, TDISPResponse) -> TDISPResponse?) throws -> TEEIORig {
    let rig = try TEEIORig()
    rig.device.dsm.responseTamper = { request, response in
      guard request.protocolID == .tdisp, let tdispRequest = try? TDISPRequest(parsing: request.message),
        let tdispResponse = try? TDISPResponse(parsing: response.message),
        let replaced = tamper(tdispRequest, tdispResponse)
      else { return response }
      return PCISIGProtocolMessage(protocolID: .tdisp, message: replaced.encode())
    }
    try rig.tsm.connect()
    try rig.tsm.bind(Self.pf1, to: Self.guest)
    return rig
  }

  func reportPortion(_ request: TDISPRequest, _ portion: [UInt8], remainder: UInt16) -> TDISPResponse {
    TDISPResponse(
      interfaceID: request.interfaceID,
      body: .deviceInterfaceReport(TDISPReportPortion(portion: portion, remainderLength: remainder)))
  }

  @Test func aMalformedReportUndoesTheLockAndNothingCanStart() throws {
    let rig = try rig { request, _ in
      request.code == .getDeviceInterfaceReport ? reportPortion(request, [0x03], remainder: 0) : nil
    }
    let error = try #require(throws: TSMError.self) { try rig.tsm.lock(Self.pf1, for: Self.guest) }
    guard case .unexpectedResponse(let why) = error.reason else {
      Issue.record("expected the report refused, got \(error)")
      return
    }
    #expect(why.hasPrefix("interface report malformed"))
    // The TSM stopped the TDI it could not describe; the session is still good.
    #expect(rig.state(Self.pf1) == .configUnlocked)
    #expect(rig.tsm.interface(Self.pf1)?.state == .unlocked)
    #expect(rig.tsm.isConnected)
    #expect(throws: TSMError(.EINVAL, .invalidState("START needs a locked TDI, it is UNLOCKED"))) {
      try rig.tsm.start(Self.pf1, for: Self.guest)
    }
  }

  @Test func aLockResponseForAnotherInterfaceTearsTheSessionDown() throws {
    let rig = try rig { request, response in
      guard request.code == .lockInterface else { return nil }
      return TDISPResponse(interfaceID: TDISPInterfaceID(requesterID: 0x0300), body: response.body)
    }
    let error = try #require(throws: TSMError.self) { try rig.tsm.lock(Self.pf1, for: Self.guest) }
    #expect(error.errno == .EIO)
    #expect(!rig.tsm.isConnected)
    // The device did lock; the TSM knows it does not know.
    #expect(rig.state(Self.pf1) == .configLocked)
    #expect(rig.tsm.interface(Self.pf1)?.state == .unknown)
    rig.device.dsm.responseTamper = nil
    try rig.tsm.disconnect()
    #expect(try rig.tsm.connect().stoppedInterfaces == [TDISPInterfaceID(requesterID: Self.pf1.rawValue)])
  }

  @Test func aTDISPErrorForAnotherInterfaceIsNotThisTDIsRefusal() throws {
    let rig = try rig { request, _ in
      guard request.code == .lockInterface else { return nil }
      return TDISPResponse(
        interfaceID: TDISPInterfaceID(requesterID: 0x0300), body: .error(TDISPErrorResponse(.busy)))
    }
    let error = try #require(throws: TSMError.self) { try rig.tsm.lock(Self.pf1, for: Self.guest) }
    guard case .unexpectedResponse = error.reason else {
      Issue.record("expected a protocol violation, got \(error)")
      return
    }
    #expect(!rig.tsm.isConnected)
  }

  @Test func aReportClaimingMoreThan64KiBIsRefusedAtOnce() throws {
    let rig = try rig { request, _ in
      request.code == .getDeviceInterfaceReport
        ? reportPortion(request, [0x03, 0x00], remainder: 0xFFFF) : nil
    }
    #expect(throws: TSMError(.EIO, .unexpectedResponse("report of 65537 bytes, over 65535"))) {
      try rig.tsm.lock(Self.pf1, for: Self.guest)
    }
    #expect(rig.tsm.messages.filter { $0.request.count > 1 && $0.request[1] == 0x84 }.count == 1)
    #expect(!rig.tsm.isConnected)
  }

  @Test func aReportInSliversIsAbandoned() throws {
    let rig = try rig { request, _ in
      guard request.code == .getDeviceInterfaceReport,
        case .getDeviceInterfaceReport(let offset, _) = request.body
      else { return nil }
      return reportPortion(request, [0], remainder: 5000 - offset - 1)
    }
    #expect(throws: TSMError(.EIO, .unexpectedResponse("report not complete after 1024 portions"))) {
      try rig.tsm.lock(Self.pf1, for: Self.guest)
    }
    #expect(!rig.tsm.isConnected)
  }

  @Test func aRefusedStopLeavesDisconnectUndoneAndTheOwnerInPlace() throws {
    var refuse = true
    let rig = try rig { request, _ in
      guard refuse, request.code == .stopInterface else { return nil }
      return TDISPResponse(interfaceID: request.interfaceID, body: .error(TDISPErrorResponse(.busy)))
    }
    try rig.tsm.lock(Self.pf1, for: Self.guest)
    try rig.tsm.start(Self.pf1, for: Self.guest)
    #expect(throws: TSMError(.EIO, .device(.busy, data: 0))) { try rig.tsm.disconnect() }
    #expect(rig.tsm.isConnected)
    #expect(rig.tsm.interface(Self.pf1)?.state == .run)
    #expect(rig.tsm.interface(Self.pf1)?.owner == Self.guest)
    #expect(throws: TSMError(.EBUSY, .boundToAnotherGuest(Self.guest))) {
      try rig.tsm.bind(Self.pf1, to: TEEIORig.otherGuest)
    }
    refuse = false
    try rig.tsm.disconnect()
    #expect(rig.state(Self.pf1) == .configUnlocked)
    #expect(rig.tsm.interface(Self.pf1)?.owner == nil)
    #expect(rig.tsm.keySet == nil)
  }

  @Test func anIDEKMAnswerInTheWrongProtocolFailsTheConnect() throws {
    let rig = try TEEIORig()
    rig.device.dsm.responseTamper = { request, response in
      request.protocolID == .ideKM
        ? PCISIGProtocolMessage(protocolID: .tdisp, message: response.message) : response
    }
    #expect(throws: TSMError(.EIO, .unexpectedResponse("vendor-defined response is not IDE_KM"))) {
      try rig.tsm.connect()
    }
    #expect(!rig.tsm.isConnected)
    #expect(rig.rootPort.state(of: 1) == .insecure)
    #expect(rig.tsm.keySet == nil)
    rig.device.dsm.responseTamper = nil
    try rig.tsm.connect()
    #expect(rig.link.isSecure(streamID: 1))
  }

  @Test func aDeviceWithoutTDISP10IsNotUsed() throws {
    let rig = try TEEIORig()
    rig.device.dsm.responseTamper = { request, response in
      guard request.protocolID == .tdisp, let parsed = try? TDISPRequest(parsing: request.message),
        parsed.code == .getTDISPVersion
      else { return response }
      let answer = TDISPResponse(
        interfaceID: parsed.interfaceID, body: .version([TDISPVersion(rawValue: 0x20)]))
      return PCISIGProtocolMessage(protocolID: .tdisp, message: answer.encode())
    }
    #expect(
      throws: TSMError(.EIO, .unexpectedResponse("the device offers no TDISP version Cove speaks (1.0)"))
    ) {
      try rig.tsm.connect()
    }
    #expect(!rig.tsm.isConnected)
  }
}
