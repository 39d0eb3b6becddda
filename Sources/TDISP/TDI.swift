public import CoveCrypto

/// Facts about the SPDM session and IDE that a TDISP request arrives with. The TDI does no I/O; the DSM
/// that owns it supplies these from its IDE_KM and SPDM state.
public struct TDIRequestContext: Hashable, Sendable {
  /// Keys for every sub-stream of the default stream named in LOCK_INTERFACE_REQUEST are programmed
  /// and the stream is enabled (PCIe 6.x §11.3.8, LOCK_INTERFACE_REQUEST).
  public var ideKeysReadyForDefaultStream: Bool
  /// Those keys were programmed through the SPDM session this request arrived on.
  public var ideKeysFromThisSession: Bool
  /// The rest of the §11.3.8 checklist holds (one default stream on TC0, no phantom functions, no
  /// overlapping BARs, supported cache line / page / BAR sizes...). False → INVALID_DEVICE_CONFIGURATION.
  public var deviceConfigurationValid: Bool

  public init(
    ideKeysReadyForDefaultStream: Bool = true, ideKeysFromThisSession: Bool = true,
    deviceConfigurationValid: Bool = true
  ) {
    self.ideKeysReadyForDefaultStream = ideKeysReadyForDefaultStream
    self.ideKeysFromThisSession = ideKeysFromThisSession
    self.deviceConfigurationValid = deviceConfigurationValid
  }
}

/// Host- or device-side events that take a locked TDI to ERROR (PCIe 6.x §11.2, the CONFIG_LOCKED/RUN error list, and
/// the "TDISP rules for the device" list; SEMANTICS.md §7).
public enum TDIErrorEvent: String, Hashable, Sendable, CaseIterable {
  /// Memory Space Enable or Bus Master Enable cleared in the function's Command register.
  case bmeOrMseCleared
  /// A write to a BAR of the function.
  case barWrite
  /// Function Level Reset of the hosting function.
  case flr
  /// A change to the PASID, ATS or PRI capability's control registers.
  case pasidAtsPriChange
  /// A change to the MSI-X table or PBA while locked.
  case msixChangeWhileLocked
  /// A write to the IDE extended capability registers of the stream the TDI uses.
  case ideRegisterWrite
  /// The default (or a bound P2P) IDE stream leaving the Secure state.
  case ideStreamInsecure
  /// The SPDM session that programmed the IDE keys ending.
  case spdmSessionEnded
  /// A translation completion (or request) with T=0 reaching a TDI in RUN. Legal in CONFIG_LOCKED.
  case tZeroRequestInRun
  /// A poisoned TLP received for the TDI.
  case poisonedTLP
  /// An Unsupported Request, Completer Abort or Completion Timeout on a request the TDI issued.
  case unsupportedRequestOrAbortOrTimeout
  /// A device-internal error the device reports against the TDI.
  case deviceInternalError

  /// Whether the event takes a TDI in `state` to ERROR. CONFIG_UNLOCKED has no locked configuration to
  /// violate; ERROR stays ERROR; T=0 traffic is only forbidden in RUN.
  public func entersError(from state: TDIState) -> Bool {
    switch state {
    case .configUnlocked, .error: false
    case .run: true
    case .configLocked: self != .tZeroRequestInRun
    }
  }
}

/// Reproductions of reference-emulator behaviour that differs from the specification.
public struct TDICompatibility: Hashable, Sendable {
  /// PCIe 6.x §11.2: STOP_INTERFACE_REQUEST in CONFIG_UNLOCKED is a no-op that succeeds. The DMTF
  /// spdm-emu and QEMU reference devices answer INVALID_INTERFACE_STATE instead; set this to match them.
  public var rejectStopWhenUnlocked: Bool

  public init(rejectStopWhenUnlocked: Bool = false) {
    self.rejectStopWhenUnlocked = rejectStopWhenUnlocked
  }

  public static let specification = TDICompatibility()
  public static let referenceEmulators = TDICompatibility(rejectStopWhenUnlocked: true)
}

/// The device side of one TEE Device Interface (PCIe 6.x §11.2): its state, the parameters it was locked
/// with, the single-use START nonce, its report and its bound P2P streams. A value type that does no
/// I/O (STYLE rule 6): `handle(_:context:)` applies one request and returns the response to send.
public struct TDI {
  public let interfaceID: TDISPInterfaceID
  public private(set) var state: TDIState = .configUnlocked
  /// The LOCK_INTERFACE_REQUEST parameters, while CONFIG_LOCKED, RUN or ERROR.
  public private(set) var lockParameters: TDISPLockInterfaceParameters?
  /// P2P stream IDs bound by BIND_P2P_STREAM_REQUEST in RUN.
  public private(set) var boundP2PStreams: Set<UInt8> = []
  /// The report as configured (addresses as the device decodes them, before MMIO_REPORTING_OFFSET).
  public private(set) var report: TDISPDeviceInterfaceReport
  public let capabilities: TDISPCapabilities
  public var compatibility: TDICompatibility
  /// Largest PORTION_LENGTH the device returns in one DEVICE_INTERFACE_REPORT (a device buffer limit;
  /// at most what fits in one TDISP message).
  public let maximumReportPortion: Int

  /// The START_INTERFACE nonce; non-nil exactly while CONFIG_LOCKED.
  private var startNonce: [UInt8]?
  /// The report frozen at LOCK with MMIO_REPORTING_OFFSET applied, served by GET_DEVICE_INTERFACE_REPORT.
  private var lockedReport: [UInt8] = []
  private let entropy: any EntropySource

  public init(
    interfaceID: TDISPInterfaceID, capabilities: TDISPCapabilities, report: TDISPDeviceInterfaceReport,
    entropy: any EntropySource, compatibility: TDICompatibility = .specification,
    maximumReportPortion: Int = TDISPLimits.maximumMessageSize - TDISPMessageHeader.size - 4
  ) {
    precondition(report.encodedSize <= TDISPDeviceInterfaceReport.maximumSize, "report over 65535 bytes")
    precondition(maximumReportPortion > 0 && maximumReportPortion <= Int(UInt16.max))
    self.interfaceID = interfaceID
    self.capabilities = capabilities
    self.report = report
    self.entropy = entropy
    self.compatibility = compatibility
    self.maximumReportPortion = maximumReportPortion
  }

  /// Replaces the report the next LOCK freezes: the device rebuilds it from the function's
  /// configuration as it stands at LOCK. Refused (false) unless CONFIG_UNLOCKED, since a locked TDI's
  /// report is part of its locked configuration (PCIe 6.x §11.2).
  @discardableResult
  public mutating func setReport(_ newReport: TDISPDeviceInterfaceReport) -> Bool {
    guard state == .configUnlocked, newReport.encodedSize <= TDISPDeviceInterfaceReport.maximumSize else {
      return false
    }
    report = newReport
    return true
  }

  /// Whether a START nonce is currently live (true exactly in CONFIG_LOCKED).
  public var hasStartNonce: Bool { startNonce != nil }

  /// TDISP versions this TDI speaks.
  public static let supportedVersions: [TDISPVersion] = [.v10]

  /// Applies one request (PCIe 6.x §11.3 rules and the §11.2 legal-state table) and returns the response,
  /// a TDISP_ERROR when the request is refused. Checks, in order: TDISPVersion (VERSION_MISMATCH, except
  /// for GET_TDISP_VERSION, which is answered whatever version it carries so a TSM can negotiate),
  /// INTERFACE_ID (INVALID_INTERFACE), whether the request is supported (UNSUPPORTED_REQUEST), the
  /// state (INVALID_INTERFACE_STATE), then the request's own rules.
  public mutating func handle(_ request: TDISPRequest, context: TDIRequestContext) -> TDISPResponse {
    let body: TDISPResponse.Body
    switch process(request, context: context) {
    case .success(let answer): body = answer
    case .failure(let error): body = .error(error)
    }
    return TDISPResponse(version: .v10, interfaceID: request.interfaceID, body: body)
  }

  private mutating func process(
    _ request: TDISPRequest, context: TDIRequestContext
  ) -> Result<TDISPResponse.Body, TDISPErrorResponse> {
    if request.code != .getTDISPVersion, !Self.supportedVersions.contains(request.version) {
      return .failure(TDISPErrorResponse(.versionMismatch))
    }
    guard request.interfaceID == interfaceID else { return .failure(TDISPErrorResponse(.invalidInterface)) }
    // UNSUPPORTED_REQUEST carries the request code in ERROR_DATA (§11.3.24, Table 11-27).
    guard capabilities.supports(request.code) else {
      return .failure(TDISPErrorResponse(.unsupportedRequest, data: UInt32(request.code.rawValue)))
    }
    switch request.body {
    case .getVersion:
      return .success(.version(Self.supportedVersions))
    case .getCapabilities:
      return .success(.capabilities(capabilities))
    case .getDeviceInterfaceState:
      return .success(.deviceInterfaceState(state))
    case .vdm(let message):
      // Cove's devices define no vendor messages: the answer echoes the registry and vendor ID with no
      // data, in any state (§11.3.25, VDM_REQUEST is legal in every state).
      return .success(
        .vdm(TDISPVendorDefinedMessage(registryID: message.registryID, vendorID: message.vendorID, data: [])))
    case .lockInterface(let parameters):
      return lock(parameters, context: context)
    case .getDeviceInterfaceReport(let offset, let length):
      return reportPortion(offset: Int(offset), length: Int(length))
    case .startInterface(let nonce):
      return start(nonce: nonce)
    case .stopInterface:
      if state == .configUnlocked, compatibility.rejectStopWhenUnlocked {
        return .failure(TDISPErrorResponse(.invalidInterfaceState))
      }
      scrubAndUnlock()
      return .success(.stopInterface)
    case .bindP2PStream(let streamID):
      guard state == .run else { return .failure(TDISPErrorResponse(.invalidInterfaceState)) }
      guard lockParameters?.flags.contains(.bindP2P) == true, !boundP2PStreams.contains(streamID) else {
        return .failure(TDISPErrorResponse(.invalidRequest))
      }
      boundP2PStreams.insert(streamID)
      return .success(.bindP2PStream)
    case .unbindP2PStream(let streamID):
      guard state == .run else { return .failure(TDISPErrorResponse(.invalidInterfaceState)) }
      guard boundP2PStreams.remove(streamID) != nil else {
        return .failure(TDISPErrorResponse(.invalidRequest))
      }
      return .success(.unbindP2PStream)
    case .setMMIOAttribute(let range):
      return setMMIOAttribute(range)
    case .unknown(let code, _):
      return .failure(TDISPErrorResponse(.unsupportedRequest, data: UInt32(code.rawValue)))
    }
  }

  private mutating func lock(
    _ parameters: TDISPLockInterfaceParameters, context: TDIRequestContext
  ) -> Result<TDISPResponse.Body, TDISPErrorResponse> {
    guard state == .configUnlocked else { return .failure(TDISPErrorResponse(.invalidInterfaceState)) }
    guard capabilities.lockInterfaceFlagsSupported.isSuperset(of: parameters.flags) else {
      return .failure(TDISPErrorResponse(.invalidRequest))
    }
    // The default stream must be keyed for every sub-stream, and keyed through this session: both are
    // INVALID_REQUEST (§11.3.9, Table 11-12 "LOCK_INTERFACE_REQUEST Error Codes").
    guard context.ideKeysReadyForDefaultStream, context.ideKeysFromThisSession else {
      return .failure(TDISPErrorResponse(.invalidRequest))
    }
    guard context.deviceConfigurationValid else {
      return .failure(TDISPErrorResponse(.invalidDeviceConfiguration))
    }
    var reported = report
    for index in reported.mmioRanges.indices {
      reported.mmioRanges[index].firstPage &+= parameters.mmioReportingOffset
    }
    let nonce = entropy.bytes(count: TDISPLimits.nonceSize)
    lockedReport = reported.encode()
    lockParameters = parameters
    startNonce = nonce
    state = .configLocked
    return .success(.lockInterface(nonce: nonce))
  }

  private func reportPortion(offset: Int, length: Int) -> Result<TDISPResponse.Body, TDISPErrorResponse> {
    guard state == .configLocked || state == .run else {
      return .failure(TDISPErrorResponse(.invalidInterfaceState))
    }
    // An OFFSET at or past the end of the report, or a zero LENGTH, asks for nothing: INVALID_REQUEST.
    guard offset < lockedReport.count, length > 0 else {
      return .failure(TDISPErrorResponse(.invalidRequest))
    }
    let count = min(length, lockedReport.count - offset, maximumReportPortion)
    let remainder = lockedReport.count - offset - count
    return .success(
      .deviceInterfaceReport(
        TDISPReportPortion(
          portion: Array(lockedReport[offset..<offset + count]), remainderLength: UInt16(remainder))))
  }

  private mutating func start(nonce: [UInt8]) -> Result<TDISPResponse.Body, TDISPErrorResponse> {
    guard state == .configLocked, let expected = startNonce else {
      return .failure(TDISPErrorResponse(.invalidInterfaceState))
    }
    // A wrong nonce leaves the TDI in CONFIG_LOCKED with the same nonce (the DMTF spdm-emu device does
    // the same; the specification does not require re-locking). 256 bits cannot be guessed.
    guard ConstantTime.equals(nonce, expected) else { return .failure(TDISPErrorResponse(.invalidNonce)) }
    startNonce = nil
    state = .run
    return .success(.startInterface)
  }

  private mutating func setMMIOAttribute(_ range: TDISPMMIORange) -> Result<
    TDISPResponse.Body, TDISPErrorResponse
  > {
    guard state == .run else { return .failure(TDISPErrorResponse(.invalidInterfaceState)) }
    let offset = lockParameters?.mmioReportingOffset ?? 0
    // §11.3.22: the range must be one the report listed (RANGE_ID, address with the reporting offset, and
    // size) and be IS_MEM_ATTR_UPDATABLE; in the request only IS_NON_TEE_MEM is defined, every other
    // attribute bit is reserved and must be zero. Any failure is INVALID_REQUEST (Table 11-25).
    guard
      range.attributes.isSubset(of: .isNonTEEMemory),
      let index = report.mmioRanges.firstIndex(where: {
        $0.rangeID == range.rangeID && $0.firstPage &+ offset == range.firstPage
          && $0.numberOfPages == range.numberOfPages
      }),
      report.mmioRanges[index].attributes.contains(.isMemoryAttributeUpdatable)
    else { return .failure(TDISPErrorResponse(.invalidRequest)) }
    if range.attributes.contains(.isNonTEEMemory) {
      report.mmioRanges[index].attributes.insert(.isNonTEEMemory)
    } else {
      report.mmioRanges[index].attributes.remove(.isNonTEEMemory)
    }
    return .success(.setMMIOAttribute)
  }

  /// Takes a locked TDI to ERROR on a security-relevant event (§11.2). CONFIG_UNLOCKED and ERROR are
  /// unchanged; a T=0 event leaves CONFIG_LOCKED alone. Leaving CONFIG_LOCKED destroys the START nonce.
  public mutating func enterError(because event: TDIErrorEvent) {
    guard event.entersError(from: state) else { return }
    startNonce = nil
    state = .error
  }

  /// STOP: back to CONFIG_UNLOCKED with every lock-time secret and binding scrubbed (§11.2: leaving
  /// ERROR or RUN requires the device to clear TDI data before the TDI can be locked again).
  private mutating func scrubAndUnlock() {
    startNonce = nil
    lockParameters = nil
    lockedReport = []
    boundP2PStreams = []
    state = .configUnlocked
  }
}
