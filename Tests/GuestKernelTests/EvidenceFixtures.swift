import CoveCrypto
import GuestABI
import GuestKernel
import HostPlatform
import IOMMU
import PCIe
import SPDM
import TDISP

/// A host platform that produces real evidence for the guest to verify: a cove-dma device with a
/// test PKI and two measurement blocks, plugged into a VMM with one confidential guest, its host
/// TSM connected over the DSM's DOE mailbox (built the way HostPlatformTests' TrustedDMATests
/// platform is). The TDI under test is the DSM's own function, which has two memory BARs and MSI-X,
/// so every part of the report check has something to look at. Deterministic: every entropy source
/// is seeded.
final class EvidenceRig {
  typealias Transport = DOEMailboxTransport<ConfigSpaceDOEPort>

  let memory: PlatformMemory
  let iommu: PlatformIOMMU
  let vmm: VMM
  let device: CoveDMADevice
  let tsm: HostTSM<Transport>
  let guest: VMMGuest
  let pki: TestPKI

  /// Function 0 (the DSM): BAR0 64 KiB with the MSI-X table at 0xE000 and PBA at 0xF000, BAR2 1 MiB.
  static let function = BDF(bus: 3, device: 0, function: 0).requesterID
  /// 2025-01-01, the test PKI's notBefore.
  static let notBefore: Int64 = 1_735_689_600
  /// 2026-01-01: inside the test PKI's validity.
  static let validationTime: Int64 = 1_767_225_600
  /// MMIO_REPORTING_OFFSET the TSM gives LOCK: nonzero, so the guest's subtraction is exercised.
  static let mmioReportingOffset: UInt64 = 0x40_0000_0000

  /// Index 1 firmware digest, index 2 hardware configuration digest (DMTF form, SHA-384).
  static let firmwareDigest = HashAlgorithm.sha384.hash(Array("evidence firmware".utf8))
  static let configurationDigest = HashAlgorithm.sha384.hash(Array("evidence configuration".utf8))
  static let measurements: [MeasurementBlock] = [
    MeasurementBlock(
      index: 1,
      dmtf: DMTFMeasurement(valueType: .mutableFirmware, isRawBitStream: false, value: firmwareDigest)),
    MeasurementBlock(
      index: 2,
      dmtf: DMTFMeasurement(
        valueType: .hardwareConfiguration, isRawBitStream: false, value: configurationDigest)),
  ]

  init() throws {
    memory = PlatformMemory(pages: 4096, entropy: SeededEntropy(seed: 70))
    let core = try IOMMUCore(tableMemory: try TablePagePool(maxPages: 1024))
    iommu = PlatformIOMMU(core: core, memory: memory)
    vmm = VMM(memory: memory, iommu: iommu)
    pki = try TestPKI.generate(entropy: SeededEntropy(seed: 71), notBefore: Self.notBefore)
    device = try CoveDMADevice(
      identity: SPDMResponderConfiguration(
        certificateChain: pki.chainRootToLeaf, signingKey: pki.deviceKey, measurements: Self.measurements),
      entropy: SeededEntropy(seed: 72))
    var policy = SPDMRequesterPolicy(trustAnchors: [pki.root])
    policy.validationTime = Self.validationTime
    var configuration = device.tsmConfiguration
    configuration.mmioReportingOffset = Self.mmioReportingOffset
    tsm = HostTSM(
      configuration: configuration,
      transport: DOEMailboxTransport(port: ConfigSpaceDOEPort(device: device.tdisp)),
      rootPort: device.rootPort, policy: policy, entropy: SeededEntropy(seed: 73))
    try vmm.plug(device, tsm: tsm)
    guest = try vmm.createGuest(GuestConfiguration(memoryBytes: 1 << 20))
    try vmm.assign(Self.function, to: guest.id)
  }

  /// The guest's policy: the rig's root, both measurements at their genuine values.
  var policy: AttestationPolicy {
    AttestationPolicy(
      trustAnchors: [pki.root.der],
      measurements: [1: [Self.firmwareDigest], 2: [Self.configurationDigest]],
      validationTime: Self.validationTime)
  }

  /// Connect, bind the TDI to the guest and lock it: CONFIG_LOCKED, the report fetched.
  func lock() throws {
    if !tsm.isConnected { try tsm.connect() }
    try tsm.bind(Self.function, to: guest.id)
    try tsm.lock(Self.function, for: guest.id)
  }

  /// The guest's accept: START_INTERFACE, RUN.
  func accept() throws {
    try tsm.start(Self.function, for: guest.id)
  }

  /// The evidence the guest's request for `nonce` returns, as it crosses to the guest.
  func evidence(nonce: [UInt8]) throws -> DeviceEvidence {
    try tsm.evidence(for: Self.function, guest: guest.id, nonce: nonce)
      .crossingToGuest(mmioReportingOffset: Self.mmioReportingOffset)
  }

  /// A 32-byte nonce, distinct per `seed`.
  static func nonce(_ seed: UInt64) -> [UInt8] { SeededEntropy(seed: 0xE000 + seed).bytes(count: 32) }

  /// The function as the guest enumerated it, read through the VMM's trapped config reads: each
  /// memory BAR's address from its register(s), its size as sizing found it at enumeration (the
  /// layout's, since sizing writes on a locked TDI would take it to ERROR), and the MSI-X capability
  /// found by walking the capability list.
  func expectedInterface() throws -> ExpectedInterface {
    let read = { (offset: Int, size: Int) throws -> UInt32 in
      try self.vmm.configRead(self.guest.id, function: Self.function, offset: offset, size: size)
    }
    let layout = device.tdisp.configSpaces[Self.function]!.layout
    var bars: [Int: Range<UInt64>] = [:]
    for (index, bar) in layout.bars.enumerated() {
      guard let bar, bar.kind != .io else { continue }
      let register = PCIHeaderRegister.bar0 + 4 * index
      var address = UInt64(try read(register, 4)) & ~0xF
      if bar.kind == .memory64 { address |= UInt64(try read(register + 4, 4)) << 32 }
      bars[index] = address..<(address + bar.size)
    }
    var msix: MSIXLocation?
    var pointer = Int(try read(0x34, 1)) & ~0x3
    while pointer != 0 {
      if try read(pointer, 1) == 0x11 {
        msix = MSIXLocation(
          messageControl: UInt16(try read(pointer + MSIXCapabilityRegister.messageControl, 2)),
          tableOffsetBIR: try read(pointer + MSIXCapabilityRegister.tableOffsetBIR, 4),
          pbaOffsetBIR: try read(pointer + MSIXCapabilityRegister.pbaOffsetBIR, 4))
        break
      }
      pointer = Int(try read(pointer + 1, 1)) & ~0x3
    }
    return ExpectedInterface(bars: bars, msix: msix)
  }
}

extension EvidenceRig {
  /// Where a MEASUREMENTS response's first block's DMTF value starts: header (4), NumberOfBlocks (1),
  /// MeasurementRecordLength (3), then Index, MeasurementSpecification, MeasurementSize (4) and the
  /// DMTF type and size (3) (DSP0274 MEASUREMENTS and measurement block tables).
  static let firstMeasurementValueOffset = 15

  /// `evidence` with one byte of the first measurement value flipped, in the response and in the
  /// signed transcript alike: consistent, but not what the device signed.
  static func tamperingMeasurement(_ evidence: DeviceEvidence) -> DeviceEvidence {
    var copy = evidence
    let unsignedCount = evidence.measurementsResponse.count - evidence.signedMeasurements.signature.count
    copy.measurementsResponse[firstMeasurementValueOffset] ^= 0x01
    let transcriptOffset = evidence.signedMeasurements.signedTranscript.count - unsignedCount
    copy.signedMeasurements.signedTranscript[transcriptOffset + firstMeasurementValueOffset] ^= 0x01
    return copy
  }
}
