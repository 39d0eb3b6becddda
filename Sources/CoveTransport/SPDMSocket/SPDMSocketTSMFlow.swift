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
/// version and capabilities, IDE_KM QUERY, KEY_PROG and K_SET_GO of a stream), then LOCK the TDI,
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
    policy: SPDMRequesterPolicy, entropy: any EntropySource, log: (String) -> Void = { _ in },
    sessionSecrets: ([SPDMSessionSecrets]) -> Void = { _ in }
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

    let connection = try tsm.connect()
    result.connection = connection
    let algorithms = connection.algorithms
    log("DOE discovery: \(connection.doeProtocols.map(\.description).joined(separator: ", "))")
    log(
      "VCA: SPDM \(algorithms.version), hash \(algorithms.hash), signature ECDSA \(algorithms.signatureCurve), DHE \(algorithms.dheCurve.map { "\($0)" } ?? "none"), AEAD AES-256-GCM"
    )
    log(
      "certificate chain verified to a trust anchor (\(connection.certificateChain.count) certificates): "
        + connection.certificateChain.map(\.subject).joined(separator: " → "))
    log(
      "measurements: \(connection.measurements.blocks.count) blocks, signature verified with the leaf key"
        + (policy.referenceMeasurements.isEmpty ? "" : ", reference values matched"))
    for block in connection.measurements.blocks {
      if let dmtf = block.dmtf {
        log(
          "  #\(block.index) \(dmtf.valueType): \(Hex.encode(dmtf.value.prefix(24)))\(dmtf.value.count > 24 ? "…" : "")"
        )
      }
    }
    log("session 0x\(String(connection.sessionID, radix: 16)) established (KEY_EXCHANGE, FINISH)")
    log(
      "TDISP \(connection.tdispVersions.map(\.description).joined(separator: ", ")); lock flags supported 0x\(String(connection.tdispCapabilities.lockInterfaceFlagsSupported.rawValue, radix: 16))"
    )
    log(
      "IDE_KM: QUERY port 0 (\(connection.ideQuery.capability.selectiveStreamCount) selective streams); KEY_PROG ×6 and K_SET_GO ×6 on stream \(configuration.streamID) \(connection.keySet) acknowledged; root port stream \(rootPort.state(of: configuration.streamID))"
    )
    if !connection.stoppedInterfaces.isEmpty {
      log("stopped TDIs left locked by an earlier connection: \(connection.stoppedInterfaces)")
    }

    try tsm.bind(interface, to: guest)
    let report = try tsm.lock(interface, for: guest)
    result.report = report
    var state = try tsm.deviceState(interface)
    result.observedStates.append(state)
    log(
      "LOCK_INTERFACE \(interface.bdf()): device says \(state); report \(report.bytes.count) bytes in \(report.portions) portion(s), \(report.report.mmioRanges.count) MMIO ranges, digest \(Hex.encode(report.digest.prefix(12)))…"
    )
    try tsm.start(interface, for: guest)
    state = try tsm.deviceState(interface)
    result.observedStates.append(state)
    log("START_INTERFACE \(interface.bdf()): device says \(state)")
    try tsm.stop(interface, for: guest)
    state = try tsm.deviceState(interface)
    result.observedStates.append(state)
    log("STOP_INTERFACE \(interface.bdf()): device says \(state)")
    try tsm.unbind(interface, from: guest)
    try tsm.disconnect()
    log(
      "disconnected: K_SET_STOP ×6, END_SESSION; \(tsm.messages.count) IDE_KM/TDISP messages in the session")
    result.sessionSecrets = tsm.sessionSecrets
    result.messages = tsm.messages.count
    return result
  }
}
