import CoveCrypto
import CoveScenario
import HostPlatform
import PCIe
import SPDM

/// A cove-dma device with a host TSM driving it through the DSM's DOE mailbox in configuration
/// space; every DOE object the TSM's transport moves becomes a `.doe` trace record, and the TSM keeps
/// its sessions' secrets. Deterministic (seeded entropy).
final class PcapRig {
  static let notBefore: Int64 = 1_735_689_600
  static let function = BDF(bus: 3, device: 0, function: 1).requesterID
  static let guest = GuestID(1)

  let device: CoveDMADevice
  let tsm: HostTSM<DOEMailboxTransport<ConfigSpaceDOEPort>>
  let recorder = TraceRecorder()
  let pki: TestPKI
  let policy: SPDMRequesterPolicy

  init(seed: UInt64 = 70) throws {
    pki = try TestPKI.generate(entropy: SeededEntropy(seed: seed), notBefore: Self.notBefore)
    let measurements = [
      MeasurementBlock(
        index: 1,
        dmtf: DMTFMeasurement(
          valueType: .mutableFirmware, isRawBitStream: false,
          value: HashAlgorithm.sha384.hash(Array("fw".utf8))))
    ]
    device = try CoveDMADevice(
      identity: SPDMResponderConfiguration(
        certificateChain: pki.chainRootToLeaf, signingKey: pki.deviceKey, measurements: measurements),
      entropy: SeededEntropy(seed: seed + 1))
    var policy = SPDMRequesterPolicy(trustAnchors: [pki.root])
    policy.validationTime = Self.notBefore + 86_400
    self.policy = policy
    tsm = HostTSM(
      configuration: device.tsmConfiguration,
      transport: Self.recordingTransport(to: device.tdisp, into: recorder),
      rootPort: device.rootPort, policy: policy, entropy: SeededEntropy(seed: seed + 2))
    tsm.recordsSessionSecrets = true
  }

  /// A mailbox transport to the device whose every object is added to the recorder.
  static func recordingTransport(to device: TDISPDevice, into recorder: TraceRecorder)
    -> DOEMailboxTransport<ConfigSpaceDOEPort>
  {
    var transport = DOEMailboxTransport(port: ConfigSpaceDOEPort(device: device))
    transport.onObject = { bytes, isRequest in
      recorder.add(
        TraceRecord(
          component: .tsm, kind: .doe, device: "03:00.0", summary: isRequest ? "DOE request" : "DOE response",
          bytes: bytes, from: isRequest ? .tsm : .dsm, to: isRequest ? .dsm : .tsm, isRequest: isRequest))
    }
    return transport
  }

  /// connect, then bind, lock, start and stop function 1, then disconnect.
  func runLifecycle(disconnect: Bool = true) throws {
    try tsm.connect()
    try tsm.bind(Self.function, to: Self.guest)
    try tsm.lock(Self.function, for: Self.guest)
    try tsm.start(Self.function, for: Self.guest)
    try tsm.stop(Self.function, for: Self.guest)
    if disconnect { try tsm.disconnect() }
  }

  var doeRecords: [TraceRecord] { recorder.records.filter { $0.kind == .doe } }
}
