import CoveWire
public import IDEKM
public import PCIe
public import SPDM
public import TDISP

/// A device's security manager (DSM): the part of function 0 that answers the PCI-SIG protocols the
/// TSM sends inside its SPDM session — IDE_KM for the link keys and TDISP for each function's TDI
/// (PCIe 6.x §6.33, §11). It plugs into the SPDM responder as its vendor-defined handler.
///
/// It also carries the cross-protocol rules: LOCK checks that the default stream's keys are in place
/// and came from the requesting session; a stream going insecure, or the session that programmed the
/// keys ending, takes every TDI locked on it to ERROR (SEMANTICS.md §7).
/// Where a LOCK_INTERFACE_REQUEST's view of the function comes from: the device that owns the DSM
/// builds the report from the function's configuration as it stands at LOCK and checks the §11.3.8
/// configuration rules.
public protocol TDILockConfigurationSource: AnyObject {
  /// The report to freeze and whether the configuration may be locked, or nil to keep the TDI's own.
  func lockConfiguration(of functionID: UInt32, flags: TDISPLockFlags) -> (
    report: TDISPDeviceInterfaceReport, isValid: Bool
  )?
}

public final class DeviceSecurityManager: SPDMVendorDefinedHandler {
  public private(set) var ideKM: IDEKMResponder
  /// TDIs by FUNCTION_ID (the INTERFACE_ID's first DW).
  public private(set) var tdis: [UInt32: TDI]
  /// The SPDM session each TDI was locked through, and the default stream it locked on.
  public private(set) var locks: [UInt32: (session: UInt32, stream: UInt8)] = [:]
  /// TDISP or IDE_KM requests that arrived outside a session and got no answer (PCIe §11.3).
  public private(set) var unansweredOutsideSession = 0
  /// A misbehaving device: sees each answer the DSM is about to send (request and response, both
  /// in the clear) and may replace it, so a TSM can be tested against a hostile or buggy DSM
  /// (wrong interface IDs, lying report lengths, refusals). Nil: the device follows the spec.
  public var responseTamper:
    ((_ request: PCISIGProtocolMessage, _ response: PCISIGProtocolMessage) -> PCISIGProtocolMessage)?
  /// The device whose configuration LOCK freezes (weak: the device owns this DSM).
  public weak var lockConfigurationSource: (any TDILockConfigurationSource)?

  public init(ideKM: IDEKMResponder, tdis: [TDI]) {
    self.ideKM = ideKM
    self.tdis = Dictionary(uniqueKeysWithValues: tdis.map { ($0.interfaceID.functionID, $0) })
  }

  public func tdi(_ functionID: UInt32) -> TDI? { tdis[functionID] }

  public func handle(_ request: VendorDefinedRequest, sessionID: UInt32?) -> SPDMVendorDefinedOutcome {
    guard let message = try? PCISIGProtocolMessage(request) else { return .unsupported }
    // TDISP and IDE_KM are accepted only inside a secured session; outside one they get no answer
    // (PCIe 6.x §11.3).
    guard let sessionID else {
      unansweredOutsideSession += 1
      return .noAnswer
    }
    let answer: PCISIGProtocolMessage
    switch message.protocolID {
    case .ideKM:
      let output = ideKM.respond(to: message.message, session: IDEKMSessionID(sessionID))
      apply(output.events.map(\.event))
      guard let response = output.response else { return .unsupported }
      answer = PCISIGProtocolMessage(protocolID: .ideKM, message: response)
    case .tdisp:
      guard let tdispRequest = try? TDISPRequest(parsing: message.message) else { return .unsupported }
      answer = PCISIGProtocolMessage(
        protocolID: .tdisp, message: handleTDISP(tdispRequest, sessionID: sessionID).encode())
    default:
      return .unsupported
    }
    let sent = responseTamper?(message, answer) ?? answer
    return .response(sent.response(version: request.version))
  }

  private func handleTDISP(_ request: TDISPRequest, sessionID: UInt32) -> TDISPResponse {
    let functionID = request.interfaceID.functionID
    guard var tdi = tdis[functionID] else {
      return TDISPResponse(
        version: request.version, interfaceID: request.interfaceID,
        body: .error(TDISPErrorResponse(.invalidInterface)))
    }
    var context = TDIRequestContext()
    if case .lockInterface(let parameters) = request.body {
      let session = IDEKMSessionID(sessionID)
      let readiness = ideKM.isReady(defaultStream: parameters.defaultStreamID, forSession: session)
      // Keys present but another session's count as present (the TDI then refuses them as foreign).
      context.ideKeysReadyForDefaultStream =
        readiness.ready || (readiness.fromSession != nil && readiness.fromSession != session)
      context.ideKeysFromThisSession = readiness.fromSession == session
      if tdi.state == .configUnlocked,
        let configuration = lockConfigurationSource?.lockConfiguration(
          of: functionID, flags: parameters.flags)
      {
        context.deviceConfigurationValid = configuration.isValid && tdi.setReport(configuration.report)
      }
    }
    let before = tdi.state
    let response = tdi.handle(request, context: context)
    if before == .configUnlocked, tdi.state == .configLocked, let parameters = tdi.lockParameters {
      locks[functionID] = (sessionID, parameters.defaultStreamID)
    }
    if tdi.state == .configUnlocked { locks[functionID] = nil }
    tdis[functionID] = tdi
    return response
  }

  /// IDE stream events: a stream leaving SECURE takes the TDIs locked on it to ERROR.
  private func apply(_ events: [IDEStreamEvent]) {
    for event in events {
      guard case .streamBecameInsecure(let streamID) = event else { continue }
      for (functionID, lock) in locks where lock.stream == streamID {
        enterError(functionID, because: .ideStreamInsecure)
      }
    }
  }

  public func sessionEnded(_ sessionID: UInt32) {
    apply(ideKM.sessionEnded(IDEKMSessionID(sessionID)).map(\.event))
    for (functionID, lock) in locks where lock.session == sessionID {
      enterError(functionID, because: .spdmSessionEnded)
    }
  }

  /// A device event (config write, FLR, T=0 request in RUN…) for one TDI (SEMANTICS.md §7).
  public func enterError(_ functionID: UInt32, because event: TDIErrorEvent) {
    guard var tdi = tdis[functionID] else { return }
    tdi.enterError(because: event)
    tdis[functionID] = tdi
  }

  /// Config-space writes the host made to function `functionID`, as the function's config space
  /// reported them: each change to locked configuration takes that function's locked TDI to ERROR
  /// (PCIe 6.x §11.2, SEMANTICS.md §7). IDE register writes concern the link, so they affect every
  /// locked TDI. A TDI that is not locked ignores them all (`TDI.enterError` keeps UNLOCKED/ERROR).
  public func configSpaceEvents(_ events: [ConfigSpaceEvent], function functionID: UInt32) {
    for event in events {
      switch event {
      case .memorySpaceDisabled, .busMasterDisabled: enterError(functionID, because: .bmeOrMseCleared)
      case .barWritten: enterError(functionID, because: .barWrite)
      case .functionLevelReset: enterError(functionID, because: .flr)
      case .atsControlChanged, .priControlChanged, .pasidControlChanged:
        enterError(functionID, because: .pasidAtsPriChange)
      case .msixControlChanged:
        // MSI-X is locked configuration only when LOCK_INTERFACE set LOCK_MSIX.
        if tdis[functionID]?.lockParameters?.flags.contains(.lockMSIX) == true {
          enterError(functionID, because: .msixChangeWhileLocked)
        }
      case .ideRegisterWritten:
        for locked in locks.keys.sorted() { enterError(locked, because: .ideRegisterWrite) }
      case .acsControlChanged, .doe, .ignoredAccess:
        break
      }
    }
  }
}
