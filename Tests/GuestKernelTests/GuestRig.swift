import CoveCrypto
import GuestABI
import GuestKernel
import HostPlatform
import IOMMU
import PCIe
import SPDM
import TDISP

/// A host with one cove-dma device connected by its TSM (the host administrator's part: SPDM session,
/// IDE keys), one confidential guest the device's function 1 is assigned to, and that guest's kernel
/// over a VMMGuestPort. Everything deterministic (seeded entropy).
final class GuestRig {
  static let notBefore: Int64 = 1_735_689_600
  static let function = BDF(bus: 3, device: 0, function: 1).requesterID

  let memory: PlatformMemory
  let vmm: VMM
  let device: CoveDMADevice
  let tsm: HostTSM<DOEMailboxTransport<ConfigSpaceDOEPort>>
  let guest: VMMGuest
  let port: VMMGuestPort
  let kernel: GuestKernel
  let pki: TestPKI
  let measurements: [MeasurementBlock]

  init(
    viommu: Bool = false, boundary: UInt64 = GuestConfiguration.defaultBoundary,
    memoryBytes: UInt64 = 8 << 20,
    options: KernelOptions = KernelOptions(autoprobe: false), acs: Bool = true, seed: UInt64 = 60,
    functions: [RequesterID] = [GuestRig.function],
    wrap: (VMMGuestPort) -> any GuestHostInterface = { $0 }
  ) throws {
    memory = PlatformMemory(pages: 8192, entropy: SeededEntropy(seed: seed))
    let core = try IOMMUCore(tableMemory: try TablePagePool(maxPages: 1024))
    let iommu = PlatformIOMMU(core: core, memory: memory)
    vmm = VMM(memory: memory, iommu: iommu)
    pki = try TestPKI.generate(entropy: SeededEntropy(seed: seed + 1), notBefore: Self.notBefore)
    measurements = Self.firmware
    device = try CoveDMADevice(
      identity: SPDMResponderConfiguration(
        certificateChain: pki.chainRootToLeaf, signingKey: pki.deviceKey, measurements: measurements),
      entropy: SeededEntropy(seed: seed + 2), acs: acs)
    var policy = SPDMRequesterPolicy(trustAnchors: [pki.root])
    policy.validationTime = Self.notBefore + 86_400
    tsm = HostTSM(
      configuration: device.tsmConfiguration,
      transport: DOEMailboxTransport(port: ConfigSpaceDOEPort(device: device.tdisp)),
      rootPort: device.rootPort, policy: policy, entropy: SeededEntropy(seed: seed + 3))
    try vmm.plug(device, tsm: tsm)
    guest = try vmm.createGuest(
      GuestConfiguration(memoryBytes: memoryBytes, boundary: boundary, viommu: viommu))
    for function in functions { try vmm.assign(function, to: guest.id) }
    try tsm.connect()
    port = VMMGuestPort(vmm: vmm, guest: guest.id)
    kernel = try GuestKernel(host: wrap(port), options: options, entropy: SeededEntropy(seed: seed + 4))
  }

  static let firmware: [MeasurementBlock] = {
    func digest(_ text: String) -> [UInt8] { HashAlgorithm.sha384.hash(Array(text.utf8)) }
    return [
      MeasurementBlock(
        index: 1,
        dmtf: DMTFMeasurement(valueType: .immutableROM, isRawBitStream: false, value: digest("rom 1.0"))),
      MeasurementBlock(
        index: 2,
        dmtf: DMTFMeasurement(valueType: .mutableFirmware, isRawBitStream: false, value: digest("fw 2.4.1"))),
    ]
  }()

  /// The policy a guest image would carry for this device: its root, its firmware digests.
  var policy: AttestationPolicy {
    var expected: [UInt8: Set<[UInt8]>] = [:]
    for block in measurements { if let value = block.dmtf?.value { expected[block.index] = [value] } }
    return AttestationPolicy(
      trustAnchors: [pki.root.der], measurements: expected, validationTime: Self.notBefore + 86_400)
  }

  var pci: PCIDevice { kernel.device(Self.function)! }

  /// Guest buffers for DMA tests: private pages from the kernel's allocator.
  func buffer(pages: Int = 1) throws -> UInt64 { try kernel.memory.allocatePages(pages) }

  /// The TDI's state on the device.
  var tdiState: TDIState { device.tdisp.tdi(Self.function)!.state }
}
