import CoveCrypto
import HostPlatform
import IOMMU
import PCIe
import SPDM
import TDISP
import Testing

/// cove-dma DMA through the platform's IOMMU model into confidential guests' memory, without a
/// vIOMMU (SEMANTICS.md §5; issue 5 "Done when").
@Suite struct TrustedDMATests {
  final class Platform {
    let memory: PlatformMemory
    let iommu: PlatformIOMMU
    let vmm: VMM
    let device: CoveDMADevice
    let tsm: HostTSM<DOEMailboxTransport<ConfigSpaceDOEPort>>
    let guest: VMMGuest

    init(boundary: UInt64 = GuestConfiguration.defaultBoundary, viommu: Bool = false, acs: Bool = true) throws
    {
      memory = PlatformMemory(pages: 4096, entropy: SeededEntropy(seed: 50))
      let core = try IOMMUCore(tableMemory: try TablePagePool(maxPages: 1024))
      iommu = PlatformIOMMU(core: core, memory: memory)
      vmm = VMM(memory: memory, iommu: iommu)
      let pki = try TestPKI.generate(entropy: SeededEntropy(seed: 51), notBefore: 1_735_689_600)
      device = try CoveDMADevice(
        identity: SPDMResponderConfiguration(
          certificateChain: pki.chainRootToLeaf, signingKey: pki.deviceKey, measurements: []),
        entropy: SeededEntropy(seed: 52), acs: acs)
      var policy = SPDMRequesterPolicy(trustAnchors: [pki.root])
      policy.validationTime = 1_767_225_600
      tsm = HostTSM(
        configuration: device.tsmConfiguration,
        transport: DOEMailboxTransport(port: ConfigSpaceDOEPort(device: device.tdisp)),
        rootPort: device.rootPort,
        policy: policy, entropy: SeededEntropy(seed: 53))
      try vmm.plug(device, tsm: tsm)
      guest = try vmm.createGuest(
        GuestConfiguration(memoryBytes: 1 << 20, boundary: boundary, viommu: viommu))
      try vmm.assign(Self.function, to: guest.id)
    }

    static let function = BDF(bus: 3, device: 0, function: 1).requesterID
    var bar: UInt64 { device.bar0(of: Self.function)!.lowerBound }

    /// Lock and accept the TDI for the guest: RUN.
    func accept() throws {
      try tsm.connect()
      try tsm.bind(Self.function, to: guest.id)
      try tsm.lock(Self.function, for: guest.id)
      try tsm.start(Self.function, for: guest.id)
    }

    /// The guest driver: a ring at `ring` (an IOVA), one descriptor, doorbell.
    func copy(ring: UInt64, ringGPA: UInt64, _ descriptor: CoveDMAEngine.Descriptor) throws {
      try vmm.guestWrite(guest.id, gpa: ringGPA, bytes: descriptor.bytes)
      func reg(_ offset: UInt64, _ value: UInt32) throws {
        _ = try vmm.mmio(guest.id, function: Self.function, address: bar + offset, write: value)
      }
      try reg(0x14C, 0)
      try reg(0x140, UInt32(truncatingIfNeeded: ring))
      try reg(0x144, UInt32(truncatingIfNeeded: ring >> 32))
      try reg(0x148, 4)
      try reg(0x14C, 1)
      try reg(0x158, 1)
    }

    var engine: CoveDMAEngine { device.engines[Self.function]! }
  }

  static let pattern: [UInt8] = (0..<300).map { UInt8($0 * 7 & 0xFF) }

  @Test func trustedDMAFromARunningTDIMovesExactlyTheBytesAsked() throws {
    let platform = try Platform()
    try platform.accept()
    let guest = platform.guest.id
    try platform.vmm.guestWrite(guest, gpa: 0x10000, bytes: Self.pattern)
    try platform.vmm.guestWrite(guest, gpa: 0x20000, bytes: [UInt8](repeating: 0xEE, count: 400))
    try platform.copy(
      ring: 0x1000, ringGPA: 0x1000,
      CoveDMAEngine.Descriptor(source: 0x10000, destination: 0x20000, length: 300, flags: .interrupt))
    #expect(try platform.vmm.guestRead(guest, gpa: 0x20000, count: 300) == Self.pattern)
    #expect(
      try platform.vmm.guestRead(guest, gpa: 0x20000 + 300, count: 100)
        == [UInt8](repeating: 0xEE, count: 100))
    #expect(try platform.vmm.guestRead(guest, gpa: 0x1000 + 24, count: 8) == [1, 0, 0, 0, 44, 1, 0, 0])
    #expect(platform.engine.bytesMoved == 300)
    #expect(platform.iommu.faults.isEmpty)
    #expect(platform.guest.interrupts.count == 1)
  }

  @Test func theSameDMAFromALockedTDIIsRefused() throws {
    let platform = try Platform()
    try platform.tsm.connect()
    try platform.tsm.bind(Platform.function, to: platform.guest.id)
    try platform.tsm.lock(Platform.function, for: platform.guest.id)
    let guest = platform.guest.id
    try platform.vmm.guestWrite(guest, gpa: 0x10000, bytes: Self.pattern)
    try platform.copy(
      ring: 0x1000, ringGPA: 0x1000,
      CoveDMAEngine.Descriptor(source: 0x10000, destination: 0x20000, length: 300))
    // Not in RUN: the engine uses T=0, and T=0 cannot reach the private ring.
    #expect(platform.iommu.faults.map(\.reason) == [.tZeroToPrivate])
    #expect(platform.iommu.faults.first?.tlp.tBit == false)
    #expect(try platform.vmm.guestRead(guest, gpa: 0x20000, count: 300) == [UInt8](repeating: 0, count: 300))
    #expect(platform.engine.faulted)
    #expect(platform.device.tdisp.tdi(Platform.function)?.state == .configLocked)
  }

  @Test func tZeroToPrivateIsBlockedAndFaultedAndErrorsARunningTDI() throws {
    let platform = try Platform()
    try platform.accept()
    let guest = platform.guest.id
    try platform.vmm.guestWrite(guest, gpa: 0x10000, bytes: Self.pattern)
    // The driver marks a private buffer as shared (T=0): blocked.
    try platform.copy(
      ring: 0x1000, ringGPA: 0x1000,
      CoveDMAEngine.Descriptor(source: 0x10000, destination: 0x20000, length: 300, flags: .sourceT0))
    #expect(platform.iommu.faults.map(\.reason) == [.tZeroToPrivate])
    #expect(platform.iommu.faults.first?.tlp.address == 0x10000)
    #expect(try platform.vmm.guestRead(guest, gpa: 0x20000, count: 300) == [UInt8](repeating: 0, count: 300))
    // An Unsupported Request on a TDI request in RUN: ERROR.
    #expect(platform.device.tdisp.tdi(Platform.function)?.state == .error)
  }

  @Test func sharedMemoryIsReachableWithT0AndTheHostSeesOnlyCiphertextOfPrivatePages() throws {
    let platform = try Platform()
    let guest = platform.guest.id
    // An untrusted device (not locked) bounces through shared pages: convert 2 pages, ring and data.
    try platform.vmm.convert(guest, gpa: 0x40000, pages: 2, toShared: true)
    try platform.vmm.guestWrite(guest, gpa: 0x41000, bytes: Self.pattern)
    let x = GuestConfiguration.defaultBoundary
    try platform.copy(
      ring: x + 0x40000, ringGPA: 0x40000,
      CoveDMAEngine.Descriptor(source: x + 0x41000, destination: x + 0x41800, length: 300))
    #expect(platform.iommu.faults.isEmpty)
    #expect(try platform.vmm.guestRead(guest, gpa: 0x41800, count: 300) == Self.pattern)

    // The host reads a private page: ciphertext, not the plaintext the guest wrote.
    try platform.vmm.guestWrite(guest, gpa: 0x10000, bytes: Self.pattern)
    let hostView = try platform.memory.read(platform.guest.pages[0x10], count: 300, as: .untrusted)
    #expect(hostView != Self.pattern)
    // ...and a shared page as it is.
    #expect(try platform.memory.read(platform.guest.pages[0x41], count: 300, as: .untrusted) == Self.pattern)
  }

  @Test func conversionInvalidatesTheOldAliasIncludingTheIOTLB() throws {
    let platform = try Platform()
    let guest = platform.guest.id
    let x = GuestConfiguration.defaultBoundary
    try platform.vmm.convert(guest, gpa: 0x40000, pages: 2, toShared: true)
    try platform.vmm.guestWrite(guest, gpa: 0x41000, bytes: Self.pattern)
    try platform.copy(
      ring: x + 0x40000, ringGPA: 0x40000,
      CoveDMAEngine.Descriptor(source: x + 0x41000, destination: x + 0x41800, length: 16))
    #expect(platform.iommu.faults.isEmpty)
    // Back to private: scrubbed, the shared alias is gone (the IOTLB had it cached), the private one
    // maps the page again.
    try platform.vmm.convert(guest, gpa: 0x41000, pages: 1, toShared: false)
    #expect(try platform.vmm.guestRead(guest, gpa: 0x41000, count: 16) == [UInt8](repeating: 0, count: 16))
    #expect(platform.guest.domain.translation(of: IOVA(x + 0x41000)) == nil)
    #expect(platform.guest.domain.translation(of: IOVA(0x41000))?.protection == [.read, .write])
    try platform.vmm.guestWrite(
      guest, gpa: 0x40000 + 32,
      bytes: CoveDMAEngine.Descriptor(source: x + 0x41000, destination: x + 0x40800, length: 16).bytes)
    _ = try platform.vmm.mmio(guest, function: Platform.function, address: platform.bar + 0x158, write: 2)
    #expect(platform.iommu.faults.map(\.reason) == [.notMapped])
    #expect(throws: VMMError(.EINVAL, "GPA 0x41000 is already private")) {
      try platform.vmm.convert(guest, gpa: 0x41000, pages: 1, toShared: false)
    }
  }

  @Test func twoGuestsCannotReachEachOthersMemory() throws {
    let platform = try Platform()
    let other = try platform.vmm.createGuest(GuestConfiguration(memoryBytes: 1 << 20))
    try platform.vmm.guestWrite(other.id, gpa: 0x10000, bytes: Self.pattern)
    try platform.accept()
    // Guest 1's device asks for an IOVA beyond guest 1's memory that is guest 2's host page: no
    // translation exists for it in guest 1's domain.
    let foreign = other.pages[0x10].rawValue
    try platform.copy(
      ring: 0x1000, ringGPA: 0x1000,
      CoveDMAEngine.Descriptor(source: foreign, destination: 0x20000, length: 16))
    #expect(platform.iommu.faults.map(\.reason) == [.notMapped])
    // Guest 1's CPU cannot read guest 2's pages either, nor the host-physical address directly.
    #expect(throws: (any Error).self) {
      try platform.memory.read(other.pages[0x10], count: 16, as: .owner(platform.guest.id))
    }
    #expect(try platform.vmm.guestRead(other.id, gpa: 0x10000, count: 300) == Self.pattern)
  }

  @Test func aCopyThatFaultsMidwayKeepsWhatMovedBeforeTheFault() throws {
    let platform = try Platform()
    let guest = platform.guest.id
    let x = GuestConfiguration.defaultBoundary
    // Ring and two destination pages shared; of the source only the first page is shared.
    try platform.vmm.convert(guest, gpa: 0x40000, pages: 1, toShared: true)
    try platform.vmm.convert(guest, gpa: 0x50000, pages: 1, toShared: true)
    try platform.vmm.convert(guest, gpa: 0x60000, pages: 2, toShared: true)
    let page = (0..<4096).map { UInt8($0 & 0xFF) }
    try platform.vmm.guestWrite(guest, gpa: 0x50000, bytes: page)
    try platform.copy(
      ring: x + 0x40000, ringGPA: 0x40000,
      CoveDMAEngine.Descriptor(source: x + 0x50000, destination: x + 0x60000, length: 8192))
    // The second source page has no shared alias: refused after exactly one page moved.
    #expect(platform.iommu.faults.map(\.reason) == [.notMapped])
    #expect(platform.iommu.faults.first?.tlp.address == x + 0x51000)
    #expect(platform.engine.bytesMoved == 4096)
    #expect(try platform.vmm.guestRead(guest, gpa: 0x60000, count: 4096) == page)
    #expect(try platform.vmm.guestRead(guest, gpa: 0x61000, count: 16) == [UInt8](repeating: 0, count: 16))
    #expect(try platform.vmm.guestRead(guest, gpa: 0x40000 + 24, count: 8) == [2, 0, 0, 0, 0, 0x10, 0, 0])
  }
}
