import CoveCrypto
import HostPlatform
import IDEKM
import PCIe
import SPDM
import TDISP

/// A TEE-IO device on its root port with a host TSM driving it through the DSM's DOE mailbox in
/// configuration space, with a fault injector on the DOE path (no rules: a clean link).
struct TEEIORig {
  typealias Link = FaultInjectingDOETransport<DOEMailboxTransport<ConfigSpaceDOEPort>>

  let device: TDISPDevice
  let rootPort: IDERootPort
  let tsm: HostTSM<Link>
  let faults: DOEFaultInjector
  let pki: TestPKI

  static let guest = GuestID(1)
  static let otherGuest = GuestID(2)
  /// 2026-01-01: inside the test PKI's validity.
  static let validationTime: Int64 = 1_767_225_600

  /// Device measurements: index 1 firmware digest, index 2 configuration digest (DMTF form).
  static let measurements: [MeasurementBlock] = [
    MeasurementBlock(
      index: 1,
      dmtf: DMTFMeasurement(
        valueType: .mutableFirmware, isRawBitStream: false, value: HashAlgorithm.sha384.hash(Array("fw".utf8))
      )),
    MeasurementBlock(
      index: 2,
      dmtf: DMTFMeasurement(
        valueType: .hardwareConfiguration, isRawBitStream: false,
        value: HashAlgorithm.sha384.hash(Array("cfg".utf8)))),
  ]

  init(
    template: TEEIODeviceTemplate = TEEIODeviceTemplate(), trustAnchorSeed: UInt64? = nil,
    tsmConfiguration: (inout TSMDeviceConfiguration) -> Void = { _ in }
  ) throws {
    pki = try TestPKI.generate(entropy: SeededEntropy(seed: 40), notBefore: 1_735_689_600)
    let identity = SPDMResponderConfiguration(
      certificateChain: pki.chainRootToLeaf, signingKey: pki.deviceKey, measurements: Self.measurements)
    let built = try template.build(identity: identity, entropy: SeededEntropy(seed: 41))
    device = built.device
    rootPort = built.rootPort
    var anchors = [pki.root]
    if let trustAnchorSeed {
      anchors = [
        try TestPKI.generate(entropy: SeededEntropy(seed: trustAnchorSeed), notBefore: 1_735_689_600).root
      ]
    }
    var policy = SPDMRequesterPolicy(trustAnchors: anchors)
    policy.validationTime = Self.validationTime
    for block in Self.measurements { policy.referenceMeasurements[block.index] = block.dmtf!.value }
    faults = DOEFaultInjector()
    let link = Link(inner: DOEMailboxTransport(port: ConfigSpaceDOEPort(device: device)), injector: faults)
    var configuration = built.tsm
    tsmConfiguration(&configuration)
    tsm = HostTSM(
      configuration: configuration, transport: link, rootPort: rootPort, policy: policy,
      entropy: SeededEntropy(seed: 42))
  }

  static let pf0 = BDF(bus: 3, device: 0, function: 0).requesterID
  static let pf1 = BDF(bus: 3, device: 0, function: 1).requesterID

  func state(_ function: RequesterID) -> TDIState? { device.tdi(function)?.state }

  /// The device's end of the stream and the root port's, as one link.
  var link: IDELink { IDELink(device: device.dsm.ideKM.ports[0].endpoint, rootPort: rootPort.endpoint) }

  /// Connect, bind to `guest`, lock, start: the TDI is in RUN.
  func run(_ function: RequesterID, guest: GuestID = TEEIORig.guest) throws {
    if !tsm.isConnected { try tsm.connect() }
    try tsm.bind(function, to: guest)
    try tsm.lock(function, for: guest)
    try tsm.start(function, for: guest)
  }
}
