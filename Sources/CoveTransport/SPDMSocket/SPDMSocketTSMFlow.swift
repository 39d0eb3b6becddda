public import CoveCrypto
import CoveWire
public import HostPlatform
import IDEKM
public import PCIe
public import SPDM
public import TDISP

/// What `cove tsm` did to the peer, step by step: enough for a test to check the whole flow and for
/// the CLI to print what was verified.
public struct SPDMSocketTSMResult: Sendable {
  public var connection: TSMConnection?
  public var report: TSMInterfaceReport?
  /// GET_DEVICE_INTERFACE_STATE answers after LOCK, START and STOP.
  public var observedStates: [TDIState] = []
  public var sessionSecrets: [SPDMSessionSecrets] = []
  /// IDE_KM and TDISP exchanges inside the session.
  public var messages = 0
}

/// Cove's TSM attesting a peer over the SPDM socket (the `cove tsm` flow): connect (DOE discovery,
/// VCA, certificate chain to a trust anchor, signed measurements, KEY_EXCHANGE/FINISH, TDISP
/// version and capabilities, IDE_KM QUERY, KEY_PROG and K_SET_GO of a stream unless the
/// configuration's `ide` is `.off`), then LOCK the TDI,
/// fetch its report, START, STOP, and disconnect (K_SET_STOP, END_SESSION). Each step is checked as
/// ``HostTSM`` checks it, and each state the TSM changes is confirmed with
/// GET_DEVICE_INTERFACE_STATE, since the device's word is what counts.
public enum SPDMSocketTSMFlow {
  /// The TSM's end of the link to a device reached over the socket: an emulated root port (00:01.0)
  /// with the configured selective stream, which IDE_KM keys along with the device.
  public static func rootPort(for configuration: TSMDeviceConfiguration) -> IDERootPort {
    IDERootPort(
      requesterID: BDF(bus: 0, device: 1, function: 0).requesterID,
      streams: [configuration.streamID: .selective])
  }

  public static func run(
    transport: SPDMSocketTSMTransport, configuration: TSMDeviceConfiguration, interface: RequesterID,
    policy: SPDMRequesterPolicy, entropy: any EntropySource, log: @escaping (String) -> Void = { _ in },
    sessionSecrets: ([SPDMSessionSecrets]) -> Void = { _ in },
    failure: (_ step: String, _ passed: [String]) -> Void = { _, _ in }
  ) throws(TSMError) -> SPDMSocketTSMResult {
    let rootPort = Self.rootPort(for: configuration)
    let tsm = HostTSM(
      configuration: configuration, transport: transport, rootPort: rootPort, policy: policy, entropy: entropy
    )
    tsm.recordsSessionSecrets = true
    var result = SPDMSocketTSMResult()
    // The key log is wanted most when the flow fails: handed over however it ends.
    defer { sessionSecrets(tsm.sessionSecrets) }
    let guest = GuestID(1)
    // What passed (short names, in order) and the step under way, for the failure report.
    var passed: [String] = []
    var current = "connect"
    func begin(_ step: String) {
      current = step
    }
    func pass(_ line: String) {
      passed.append(current)
      log(line)
    }
    tsm.onConnectEvent = { event in
      switch event {
      case .starting(let step): begin(step.description)
      case .discovered(let protocols):
        // Only a PCI_DOE connection has a mailbox to walk; the others carry SPDM by definition.
        pass(
          transport.connection.binding == .doe
            ? "DOE discovery: \(protocols.map(\.description).joined(separator: ", "))"
            : "DOE discovery: none on \(transport.connection.binding) (SPDM and secured SPDM by the binding)")
      case .negotiated(let algorithms):
        pass(
          "VCA: SPDM \(algorithms.version), hash \(algorithms.hash), signature ECDSA \(algorithms.signatureCurve), DHE \(algorithms.dheCurve.map { "\($0)" } ?? "none"), AEAD AES-256-GCM"
        )
      case .certificateChainVerified(let chain, let anchor):
        let anchorIndex = anchor.flatMap { anchor in policy.trustAnchors.firstIndex { $0.der == anchor.der } }
        pass(
          "certificate chain: \(chain.count) certificates, "
            + chain.map(\.subject).joined(separator: " → ")
            + "; verified to trust anchor \(anchor?.subject ?? "?")"
            + (anchorIndex.map { " (anchor \($0 + 1) of \(policy.trustAnchors.count))" } ?? ""))
      case .measurementsVerified(let measurements):
        pass(
          "measurements: \(measurements.blocks.count) blocks, signature verified with the leaf key"
            + (policy.referenceMeasurements.isEmpty ? "" : ", reference values matched"))
        for block in measurements.blocks {
          if let dmtf = block.dmtf {
            log(
              "  #\(block.index) \(dmtf.valueType): \(Hex.encode(dmtf.value.prefix(24)))\(dmtf.value.count > 24 ? "…" : "")"
            )
          }
        }
      case .sessionEstablished(let sessionID):
        pass("session 0x\(String(sessionID, radix: 16)) established (KEY_EXCHANGE, FINISH)")
      case .tdispVersions(let versions):
        pass("TDISP GET_VERSION: \(versions.map(\.description).joined(separator: ", "))")
      case .tdispCapabilities(let capabilities):
        pass(
          "TDISP GET_CAPABILITIES: DSM_CAPS 0x\(String(capabilities.dsmCapabilities, radix: 16)), lock flags supported 0x\(String(capabilities.lockInterfaceFlagsSupported.rawValue, radix: 16)), requests supported \(Hex.encode(capabilities.requestMessagesSupported.prefix(2))), device address width \(capabilities.deviceAddressWidth)"
        )
      case .ideQueried(let answer):
        let capability = answer.capability
        pass(
          "IDE_KM QUERY port 0: \(BDF(bus: answer.bus, device: answer.deviceFunction >> 3, function: answer.deviceFunction & 7)) segment \(answer.segment), max port \(answer.maxPortIndex), IDE Capability \(capability.hexDescription) (\(capability.linkStreamCount) Link IDE, \(capability.selectiveStreamCount) Selective IDE streams)"
        )
        if answer.zeroSurplus > 0 {
          log(
            "warning: QUERY_RESP carries \(answer.zeroSurplus) zero bytes beyond the register blocks IDE Capability \(capability.hexDescription) describes; ignored (a fixed-size register array, as DMTF libspdm's sample device sends)"
          )
        }
      case .ideStreamSecure(let stream, let keySet):
        pass(
          "IDE_KM: KEY_PROG ×6 and K_SET_GO ×6 on stream \(stream) \(keySet) acknowledged; root port stream \(rootPort.state(of: stream))"
        )
      case .ideSkipped:
        begin("IDE_KM (skipped: --ide off)")
        pass("IDE_KM: skipped (--ide off): no stream keyed, the link carries TDISP without IDE")
      case .interfaceStopped(let id, let state):
        log("  TDI \(id) was \(state), left by an earlier connection: stopped")
      case .checkingInterface(let id):
        begin("GET_DEVICE_INTERFACE_STATE of TDI \(id)")
      case .interfacesUnlocked(let count):
        begin(TSMConnectStep.interfaceStates.description)
        pass("TDI states: \(count) TDI(s) in CONFIG_UNLOCKED")
      }
    }

    do throws(TSMError) {
      let connection = try tsm.connect()
      result.connection = connection
      if !connection.stoppedInterfaces.isEmpty {
        log("stopped TDIs left locked by an earlier connection: \(connection.stoppedInterfaces)")
      }
      begin("bind \(interface.bdf())")
      try tsm.bind(interface, to: guest)
      begin("LOCK_INTERFACE \(interface.bdf())")
      let report = try tsm.lock(interface, for: guest)
      result.report = report
      begin("GET_DEVICE_INTERFACE_STATE after LOCK")
      var state = try tsm.deviceState(interface)
      result.observedStates.append(state)
      pass(
        "LOCK_INTERFACE \(interface.bdf()) (flags 0x\(String(configuration.lockFlags.rawValue, radix: 16)), default stream \(configuration.streamID)\(configuration.ide == .off ? ", not keyed" : "")): device says \(state)"
      )
      log("interface report: " + Self.summary(report))
      begin("START_INTERFACE \(interface.bdf())")
      try tsm.start(interface, for: guest)
      begin("GET_DEVICE_INTERFACE_STATE after START")
      state = try tsm.deviceState(interface)
      result.observedStates.append(state)
      pass("START_INTERFACE \(interface.bdf()): device says \(state)")
      begin("STOP_INTERFACE \(interface.bdf())")
      try tsm.stop(interface, for: guest)
      begin("GET_DEVICE_INTERFACE_STATE after STOP")
      state = try tsm.deviceState(interface)
      result.observedStates.append(state)
      pass("STOP_INTERFACE \(interface.bdf()): device says \(state)")
      begin("unbind")
      try tsm.unbind(interface, from: guest)
      begin(configuration.ide == .off ? "END_SESSION" : "K_SET_STOP and END_SESSION")
      try tsm.disconnect()
      pass(
        "disconnected: \(configuration.ide == .off ? "" : "K_SET_STOP ×6, ")END_SESSION; \(tsm.messages.count) IDE_KM/TDISP messages in the session"
      )
    } catch {
      failure(current, passed)
      // A refusal (TDISP_ERROR) leaves the session up: end it as a disconnect would (stop what is
      // locked, K_SET_STOP, END_SESSION). The first error stays the one reported.
      if tsm.isConnected { try? tsm.disconnect() }
      throw error
    }
    result.sessionSecrets = tsm.sessionSecrets
    result.messages = tsm.messages.count
    return result
  }

  /// What to try after `error` failed `step`, when the failure has a known cause on the TSM's side:
  /// a TDI the device does not know (DMTF's sample TDISP device knows only the interface TDISP
  /// GET_VERSION named, the DSM), or a LOCK refused with INVALID_REQUEST while `ide` is off (a device
  /// that checks its default stream is keyed through this session, as PCIe 6.x §11.3.9 has it, cannot
  /// be locked without IDE).
  public static func hint(for error: TSMError, at step: String, configuration: TSMDeviceConfiguration)
    -> String?
  {
    guard case .device(let code, _) = error.reason else { return nil }
    if code == .invalidInterface, step.contains("TDI") || step.hasPrefix("LOCK_INTERFACE") {
      let dsm = configuration.dsmFunction.bdf()
      return
        "the device does not know that TDI; --interface names the TDI to drive (DMTF's spdm_responder_emu knows only the function TDISP GET_VERSION went to, the DSM: try --interface \(dsm))"
    }
    if code == .invalidRequest, step.hasPrefix("LOCK_INTERFACE"), configuration.ide == .off {
      return
        "with --ide off stream \(configuration.streamID) is not keyed, and a device that requires its default stream keyed through this session before LOCK (PCIe 6.x §11.3.9) refuses it: use --ide required"
    }
    return nil
  }

  /// One line about a report as the TSM fetched it: size, portions, digest, then the contents' summary
  /// of its contents.
  public static func summary(_ report: TSMInterfaceReport) -> String {
    "\(report.bytes.count) bytes in \(report.portions) portion(s), digest \(Hex.encode(report.digest.prefix(12)))…; "
      + summary(report.report)
  }

  /// What a report says: INTERFACE_INFO with its flags named, each MMIO range (RANGE_ID, FIRST_PAGE,
  /// pages, attributes) and the size of the device-specific information.
  public static func summary(_ body: TDISPDeviceInterfaceReport) -> String {
    let info = body.interfaceInfo
    let infoNames = [
      (TDISPInterfaceInfo.noFirmwareUpdateWhileLocked, "no-fw-update"),
      (.dmaWithoutPASID, "DMA-without-PASID"),
      (.dmaWithPASID, "DMA-with-PASID"), (.atsSupported, "ATS"), (.prsSupported, "PRS"),
    ].filter { info.contains($0.0) }.map(\.1)
    let ranges = body.mmioRanges.map { range in
      let attributes = [
        (TDISPMMIORangeAttributes.msixTable, "MSI-X table"), (.msixPBA, "MSI-X PBA"),
        (.isNonTEEMemory, "non-TEE"), (.isMemoryAttributeUpdatable, "attr-updatable"),
      ].filter { range.attributes.contains($0.0) }.map(\.1)
      return
        "#\(range.rangeID) first page 0x\(String(range.firstPage, radix: 16)), \(range.numberOfPages) page\(range.numberOfPages == 1 ? "" : "s")\(attributes.isEmpty ? "" : " (" + attributes.joined(separator: ", ") + ")")"
    }
    return
      "INTERFACE_INFO 0x\(String(info.rawValue, radix: 16))\(infoNames.isEmpty ? "" : " (" + infoNames.joined(separator: ", ") + ")"); \(body.mmioRanges.count) MMIO range\(body.mmioRanges.count == 1 ? "" : "s"): \(ranges.joined(separator: "; ")); \(body.deviceSpecificInfo.count) bytes device-specific info"
  }
}
