public import CoveCrypto
public import IDEKM
public import PCIe
public import SPDM
public import TDISP

/// One function of an emulated TDISP device as its maker describes it.
public struct TDISPFunctionDescription: Sendable {
  public var requesterID: RequesterID
  public var configSpace: PCIeConfigSpace
  /// The PF of a virtual function; nil for a physical function.
  public var physicalFunction: RequesterID?
  public var capabilities: TDISPCapabilities
  public var reportTweaks: InterfaceReportTweaks
  public var compatibility: TDICompatibility

  public init(
    requesterID: RequesterID, configSpace: PCIeConfigSpace, physicalFunction: RequesterID? = nil,
    capabilities: TDISPCapabilities, reportTweaks: InterfaceReportTweaks = .none,
    compatibility: TDICompatibility = .specification
  ) {
    self.requesterID = requesterID
    self.configSpace = configSpace
    self.physicalFunction = physicalFunction
    self.capabilities = capabilities
    self.reportTweaks = reportTweaks
    self.compatibility = compatibility
  }
}

/// A device description Cove cannot build, named precisely.
public enum TDISPDeviceError: Error, Hashable, Sendable, CustomStringConvertible {
  case noFunctions
  /// The first function hosts the DSM and must carry the DOE capability.
  case dsmWithoutDOE(RequesterID)
  /// Only the DSM function has a DOE mailbox (SEMANTICS.md §8): other functions' TDIs are reached
  /// through it.
  case doeOnNonDSMFunction(RequesterID)
  case duplicateFunction(RequesterID)
  case unknownPhysicalFunction(vf: RequesterID, pf: RequesterID)
  /// A VF's parent must itself be a PF.
  case nestedVirtualFunction(RequesterID)

  public var description: String {
    switch self {
    case .noFunctions: "a device needs at least one function"
    case .dsmWithoutDOE(let id): "function \(id) hosts the DSM but has no DOE capability"
    case .doeOnNonDSMFunction(let id): "function \(id) has a DOE capability; only the DSM function may"
    case .duplicateFunction(let id): "function \(id) is described twice"
    case .unknownPhysicalFunction(let vf, let pf):
      "VF \(vf) names PF \(pf), which is not a function of the device"
    case .nestedVirtualFunction(let id): "VF \(id) names a VF as its PF"
    }
  }
}

/// What a device did with an inbound TLP.
public enum TLPVerdict: Hashable, Sendable {
  case completed
  /// Unsupported Request (PCIe 6.x §2.3.1), with why.
  case unsupportedRequest(String)
}

/// One event on the device, in order: what traces and tests read.
public enum TDISPDeviceEvent: Hashable, Sendable {
  case configWrite(function: RequesterID, events: [ConfigSpaceEvent])
  /// A PF's FLR reset one of its VFs too (PCIe 6.x §9.2.2.3: FLR of a PF resets its VFs).
  case flrPropagated(from: RequesterID, to: RequesterID)
  case tlp(function: RequesterID, TLP, TLPVerdict, tdiBefore: TDIState, tdiAfter: TDIState)
}

/// An emulated TDISP device: its functions' configuration spaces, the DOE mailbox on the first
/// function (the DSM), the SPDM responder behind it with the DSM as its vendor handler, and one TDI
/// per function (PCIe 6.x §11.1: the DSM, TDIs hosted by PFs and VFs).
///
/// Every path the host has to the device is a configuration access or a TLP, and every event that
/// TDISP cares about is derived from those: a Command write that clears Bus Master Enable reaches the
/// DSM as `.busMasterDisabled` from the configuration space model, not as a call a test makes.
public final class TDISPDevice: TDILockConfigurationSource {
  public let dsmFunction: RequesterID
  /// Functions in description order (the DSM first).
  public let functionIDs: [RequesterID]
  public private(set) var configSpaces: [RequesterID: PCIeConfigSpace]
  public let dsm: DeviceSecurityManager
  public private(set) var doe: SPDMDOEEndpoint
  public private(set) var events: [TDISPDeviceEvent] = []
  private let physicalFunctions: [RequesterID: RequesterID]
  private let tweaks: [RequesterID: InterfaceReportTweaks]

  /// - Parameters:
  ///   - functions: the DSM function first; it alone has the DOE capability.
  ///   - responder: the DSM's SPDM identity (certificate chain, key, measurements).
  ///   - idePorts: the device's IDE_KM ports (port 0 is the one the DOE mailbox belongs to).
  ///   - entropy: for the responder and every TDI's START nonces.
  public init(
    functions: [TDISPFunctionDescription], responder: SPDMResponderConfiguration, idePorts: [IDEKMPort],
    entropy: any EntropySource
  ) throws(TDISPDeviceError) {
    guard let first = functions.first else { throw .noFunctions }
    guard first.configSpace.layout.doeOffset != nil else { throw .dsmWithoutDOE(first.requesterID) }
    var spaces: [RequesterID: PCIeConfigSpace] = [:]
    var parents: [RequesterID: RequesterID] = [:]
    for function in functions {
      guard spaces[function.requesterID] == nil else { throw .duplicateFunction(function.requesterID) }
      if function.requesterID != first.requesterID, function.configSpace.layout.doeOffset != nil {
        throw .doeOnNonDSMFunction(function.requesterID)
      }
      spaces[function.requesterID] = function.configSpace
      if let pf = function.physicalFunction { parents[function.requesterID] = pf }
    }
    for (vf, pf) in parents {
      guard spaces[pf] != nil else { throw .unknownPhysicalFunction(vf: vf, pf: pf) }
      guard parents[pf] == nil else { throw .nestedVirtualFunction(vf) }
    }
    dsmFunction = first.requesterID
    functionIDs = functions.map(\.requesterID)
    configSpaces = spaces
    physicalFunctions = parents
    tweaks = Dictionary(uniqueKeysWithValues: functions.map { ($0.requesterID, $0.reportTweaks) })
    let tdis = functions.map { function in
      TDI(
        interfaceID: TDISPInterfaceID(requesterID: function.requesterID.rawValue),
        capabilities: function.capabilities,
        report: InterfaceReportBuilder.report(
          for: function.configSpace, lockFlags: [], tweaks: function.reportTweaks),
        entropy: entropy, compatibility: function.compatibility)
    }
    dsm = DeviceSecurityManager(ideKM: IDEKMResponder(ports: idePorts), tdis: tdis)
    var spdm = SPDMResponder(configuration: responder, entropy: entropy)
    spdm.vendorDefinedHandler = dsm
    doe = SPDMDOEEndpoint(responder: spdm)
    dsm.lockConfigurationSource = self
  }

  /// Serves one whole DOE object without the mailbox registers, for a transport that moves whole
  /// objects (the spdm-emu/QEMU SPDM socket protocol, PROTOCOLS.md); nil: no response.
  public func serveDOEObject(_ object: DOEDataObject) -> DOEDataObject? { doe.serve(object) }

  /// One SPDM message straight to the DSM's responder, for transports without DOE framing (the SPDM
  /// socket's MCTP and NONE bindings); nil: no response.
  public func respondSPDM(_ message: SPDMTransportMessage) -> SPDMTransportMessage? {
    doe.responder.respond(to: message)
  }

  /// The DSM's SPDM responder as it stands (its sessions, for a capture's key log).
  public var spdmResponder: SPDMResponder { doe.responder }

  /// How the secured records of sessions begun from now on are laid out (MCTP when the DSM is
  /// reached over MCTP, DSP0275; DOE otherwise).
  public func setSecuredRecordFormat(_ format: SecuredRecordFormat) {
    doe.responder.securedRecordFormat = format
  }

  /// The VFs of `pf`, in description order.
  public func virtualFunctions(of pf: RequesterID) -> [RequesterID] {
    functionIDs.filter { physicalFunctions[$0] == pf }
  }

  public func tdi(_ function: RequesterID) -> TDI? { dsm.tdi(UInt32(function.rawValue)) }

  // MARK: Configuration access (the host's path to the device)

  /// A configuration read. A function the device does not have reads all ones, as an unclaimed
  /// configuration request does (PCIe 6.x §7.5.1.1, Vendor ID 0xFFFF).
  public func configRead(_ function: RequesterID, offset: Int, size: Int) -> UInt32 {
    guard let space = configSpaces[function] else {
      return (1...3).contains(size) ? (1 << (8 * UInt32(size))) - 1 : 0xFFFF_FFFF
    }
    return function == dsmFunction
      ? space.read(offset: offset, size: size, doeMailbox: doe.mailbox)
      : space.read(offset: offset, size: size)
  }

  /// A configuration write, with the events it caused. DOE register writes go to the mailbox;
  /// events that change locked configuration reach the DSM, which takes that function's TDI to
  /// ERROR; a PF's FLR resets its VFs and takes their TDIs to ERROR too.
  @discardableResult
  public func configWrite(_ function: RequesterID, offset: Int, size: Int, value: UInt32)
    -> [ConfigSpaceEvent]
  {
    guard configSpaces[function] != nil else { return [] }
    let happened = configSpaces[function]!.write(offset: offset, size: size, value: value)
    for event in happened {
      switch event {
      case .doe(let register, let dword) where function == dsmFunction:
        doe.writeRegister(offset: register, value: dword)
      case .functionLevelReset:
        if function == dsmFunction {
          // FLR aborts whatever the DSM function's DOE instance holds (PCIe 6.x §6.30.2).
          doe.writeRegister(offset: DOERegister.control, value: DOEControl.abort.rawValue)
        }
      default:
        break
      }
    }
    // DOE window traffic is the mailbox's business; the log keeps configuration changes.
    if happened.contains(where: { if case .doe = $0 { false } else { true } }) {
      events.append(.configWrite(function: function, events: happened))
    }
    dsm.configSpaceEvents(happened, function: UInt32(function.rawValue))
    if happened.contains(.functionLevelReset) {
      for vf in virtualFunctions(of: function) {
        configSpaces[vf]!.reset()
        events.append(.flrPropagated(from: function, to: vf))
        dsm.configSpaceEvents([.functionLevelReset], function: UInt32(vf.rawValue))
      }
    }
    return happened
  }

  // MARK: TLPs into the device

  /// A TLP arriving at `function` (a memory request the function's BARs decode, or a translation
  /// completion for its ATS requests). The TDISP rules of PCIe 6.x §11.2 for a TDI in RUN:
  /// - a T=0 translation completion is an error: the TDI goes to ERROR;
  /// - a T=0 memory request to TEE memory (a reported range without IS_NON_TEE_MEM, or anything
  ///   outside the reported ranges) is refused with UR and the TDI goes to ERROR;
  /// - a T=0 request to a non-TEE range is served.
  /// A T=1 request to a TDI that is not in RUN is refused with UR (only a TDI in RUN may take part
  /// in TEE traffic); the TDI's state does not change, since nothing it locked was touched.
  @discardableResult
  public func receive(_ tlp: TLP, at function: RequesterID) -> TLPVerdict {
    guard let tdi = tdi(function) else { return .unsupportedRequest("no function \(function)") }
    let before = tdi.state
    let verdict: TLPVerdict
    switch (tlp.kind, tlp.tBit, before) {
    case (.translationCompletion, false, .run):
      dsm.enterError(UInt32(function.rawValue), because: .tZeroRequestInRun)
      verdict = .unsupportedRequest("T=0 translation completion for a TDI in RUN")
    case (.memoryRead, false, .run), (.memoryWrite, false, .run):
      if isNonTEE(tlp.address, in: tdi) {
        verdict = .completed
      } else {
        dsm.enterError(UInt32(function.rawValue), because: .tZeroRequestInRun)
        verdict = .unsupportedRequest("T=0 request to TEE memory of a TDI in RUN")
      }
    case (_, true, let state) where state != .run:
      verdict = .unsupportedRequest("T=1 request for a TDI in \(state)")
    default:
      verdict = .completed
    }
    events.append(
      .tlp(function: function, tlp, verdict, tdiBefore: before, tdiAfter: self.tdi(function)!.state))
    return verdict
  }

  private func isNonTEE(_ address: UInt64, in tdi: TDI) -> Bool {
    tdi.report.mmioRanges.contains { range in
      let end = range.firstPage &+ UInt64(range.numberOfPages) * InterfaceReportBuilder.pageSize
      return address >= range.firstPage && address < end && range.attributes.contains(.isNonTEEMemory)
    }
  }

  // MARK: TDILockConfigurationSource

  public func lockConfiguration(of functionID: UInt32, flags: TDISPLockFlags) -> (
    report: TDISPDeviceInterfaceReport, isValid: Bool
  )? {
    let function = RequesterID(rawValue: UInt16(truncatingIfNeeded: functionID))
    guard let space = configSpaces[function] else { return nil }
    return (
      InterfaceReportBuilder.report(for: space, lockFlags: flags, tweaks: tweaks[function] ?? .none),
      InterfaceReportBuilder.lockRefusal(space) == nil
    )
  }
}

/// The DSM function's DOE registers as the host reaches them: configuration reads and writes at
/// the DOE capability's offset (PCIe 6.x §7.9.24), through the device's configuration space.
public struct ConfigSpaceDOEPort: DOERegisterPort {
  public let device: TDISPDevice
  public let doeOffset: Int

  public init(device: TDISPDevice) {
    self.device = device
    doeOffset = device.configSpaces[device.dsmFunction]!.layout.doeOffset!
  }

  public func readDOERegister(offset: Int) -> UInt32 {
    device.configRead(device.dsmFunction, offset: doeOffset + offset, size: 4)
  }

  public mutating func writeDOERegister(offset: Int, value: UInt32) {
    device.configWrite(device.dsmFunction, offset: doeOffset + offset, size: 4, value: value)
  }
}
