import CoveGuestDrivers
import GuestABI
import GuestKernel
import HostPlatform
import IOMMU
import PCIe
import Testing

/// Kernel DMA with PASID (SEMANTICS.md §3): the settled model (a PASID on the device's own DMA
/// domain, the normal DMA API), and the 2021 RFC's modes behind the administrator's policy.
@Suite struct PASIDTests {
  static let pattern: [UInt8] = (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 1) }

  static func errno(_ body: () throws -> Void) -> Errno? {
    do { try body() } catch let error as KernelError { return error.errno } catch { return nil }
    return nil
  }

  static func copy(_ rig: GuestRig, _ driver: PASIDCopyDriver) throws {
    let source = try rig.buffer()
    let destination = try rig.buffer()
    try rig.kernel.memory.write(source, bytes: pattern)
    #expect(try driver.copy(rig.pci, kernel: rig.kernel, from: source, to: destination, length: 4096) == 4096)
    #expect(try rig.kernel.memory.read(destination, count: 4096) == pattern)
  }

  @Test(arguments: [false, true]) func aPASIDOnTheDevicesOwnDomainWorksUntrustedAndAccepted(_ accept: Bool)
    throws
  {
    let rig = try GuestRig(viommu: true)
    if accept {
      try rig.kernel.tsmLock(rig.pci)
      try rig.kernel.tsmAccept(rig.pci, policy: rig.policy)
    }
    let driver = PASIDCopyDriver()
    try rig.kernel.register(driver)
    try rig.kernel.bind(rig.pci, driver: "cove-dma-pasid")
    let pasid = try #require(driver.pasids[GuestRig.function])
    #expect(pasid.rawValue >= 1)
    let bouncesBefore = rig.kernel.swiotlb!.statistics.allocations
    try Self.copy(rig, driver)
    #expect(rig.kernel.swiotlb!.statistics.allocations - bouncesBefore == (accept ? 0 : 2))
    // The same IOVA means the same thing with and without the PASID: one domain behind both.
    let core = rig.kernel.iommu!.core
    #expect(
      try core.pasidTable(of: rig.pci.bdf)[pasid]?.id
        == core.currentDomain(of: core.group(of: rig.pci.bdf)!).id)
    #expect(rig.vmm.iommu.faults.isEmpty)
    try rig.kernel.unbind(rig.pci)
    #expect(try core.pasidTable(of: rig.pci.bdf).isEmpty, "the PASID goes with the driver")
  }

  @Test func withoutAnIOMMUThereIsNoPASID() throws {
    let rig = try GuestRig()
    try rig.kernel.register(PASIDCopyDriver())
    #expect(Self.errno { try rig.kernel.bind(rig.pci, driver: "cove-dma-pasid") } == .ENODEV)
    #expect(rig.pci.driver == nil)
  }

  @Test(arguments: [PASIDMode.bypass, .kvaStrict, .kvaFast])
  func theRFCModesNeedTheAdministrator(_ mode: PASIDMode) throws {
    let rig = try GuestRig(viommu: true)
    try rig.kernel.tsmLock(rig.pci)
    try rig.kernel.tsmAccept(rig.pci, policy: rig.policy)
    let driver = PASIDCopyDriver(mode: mode)
    try rig.kernel.register(driver)
    #expect(Self.errno { try rig.kernel.bind(rig.pci, driver: driver.name) } == .EPERM)
    rig.kernel.pasidPolicy = PASIDPolicy(allowRFCModes: true)
    #expect(
      Self.errno { try rig.kernel.bind(rig.pci, driver: driver.name) } == .EPERM, "not a trusted device")
    rig.kernel.pasidPolicy.trustedDevices = [GuestRig.function]
    try rig.kernel.bind(rig.pci, driver: driver.name)
    try Self.copy(rig, driver)
    #expect(rig.kernel.swiotlb!.statistics.allocations == 0)
  }

  @Test(arguments: [true, false]) func kvaModeKeepsTheIOTLBInSyncOnlyWhenStrict(_ strict: Bool) throws {
    let rig = try GuestRig(viommu: true)
    try rig.kernel.tsmLock(rig.pci)
    try rig.kernel.tsmAccept(rig.pci, policy: rig.policy)
    rig.kernel.pasidPolicy = PASIDPolicy(allowRFCModes: true, trustedDevices: [GuestRig.function])
    let driver = PASIDCopyDriver(mode: strict ? .kvaStrict : .kvaFast)
    try rig.kernel.register(driver)
    try rig.kernel.bind(rig.pci, driver: driver.name)
    let pasid = try #require(driver.pasids[GuestRig.function])
    let viommu = rig.guest.viommu!
    let page = try rig.buffer()
    let kva = try rig.kernel.vmap(page, pages: 1)
    func translated() -> UInt64? {
      try? viommu.translate(
        requester: GuestRig.function, pasid: pasid, iova: IOVA(kva.rawValue), access: .read
      ).get()
        .guestPhysical.rawValue
    }
    #expect(translated() == page, "the device sees the kernel's mapping (and caches it)")
    rig.kernel.vunmap(kva, pages: 1)
    #expect((translated() != nil) == !strict, "fast mode leaves the device a stale translation")
    rig.kernel.flushKVA()
    #expect(translated() == nil)
  }
}
