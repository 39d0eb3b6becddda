import IOMMU
import PCIe
import Testing

/// The policy core, the radix page table, the IOTLB and the DMA layer working together.
@Suite struct CoreIntegrationTests {
  let device = BDF(bus: 3, device: 0, function: 0)

  func core(strict: Bool) throws -> (IOMMUCore, TablePagePool) {
    let pool = try TablePagePool(maxPages: 4096)
    let core = try IOMMUCore(configuration: .init(strict: strict, iotlbCapacity: 64), tableMemory: pool)
    try core.addDevice(DeviceDescription(device, maxPASID: 1 << 10))
    return (core, pool)
  }

  @Test func translationsFillAndHitTheIOTLB() throws {
    let (core, _) = try core(strict: true)
    let iova = try core.dmaMap(
      device: device, physical: PhysicalAddress(0x8000_1234), size: 0x100, protection: .readWrite)
    #expect(iova.rawValue & 0xFFF == 0x234)
    let first = try core.translate(device: device, pasid: nil, iova: iova, access: .read).get()
    #expect(first.physical == PhysicalAddress(0x8000_1234))
    #expect(core.iotlb.misses == 1)
    _ = try core.translate(device: device, pasid: nil, iova: iova, access: .write).get()
    #expect(core.iotlb.hits == 1)
  }

  @Test func strictUnmapLeavesNoStaleTranslation() throws {
    let (core, _) = try core(strict: true)
    let iova = try core.dmaMap(
      device: device, physical: PhysicalAddress(0x9000_0000), size: 0x1000, protection: .read)
    _ = try core.translate(device: device, pasid: nil, iova: iova, access: .read).get()
    try core.dmaUnmap(device: device, iova: iova, size: 0x1000)
    // The cached entry is gone with the mapping: the access faults instead of reaching old memory.
    guard case .failure(let fault) = core.translate(device: device, pasid: nil, iova: iova, access: .read)
    else {
      Issue.record("a stale IOTLB entry translated after a strict unmap")
      return
    }
    #expect(fault.reason == .notMapped)
  }

  @Test func lazyUnmapHoldsTheIOVAUntilAFlushThatBeganAfterIt() throws {
    let (core, _) = try core(strict: false)
    let domain = try core.currentDomain(of: #require(core.group(of: device)))
    #expect(domain.type == .dmaFQ)
    let iova = try core.dmaMap(
      device: device, physical: PhysicalAddress(0xA000_0000), size: 0x1000, protection: .read)
    try core.dmaUnmap(device: device, iova: iova, size: 0x1000)
    // Not yet flushed: the same size never gets the queued IOVA back.
    let other = try core.dmaMap(
      device: device, physical: PhysicalAddress(0xB000_0000), size: 0x1000, protection: .read)
    #expect(other != iova)
    core.flushDMAQueues()
    try core.dmaUnmap(device: device, iova: other, size: 0x1000)
    core.flushDMAQueues()
    let reused = try core.dmaMap(
      device: device, physical: PhysicalAddress(0xC000_0000), size: 0x1000, protection: .read)
    #expect([iova, other].contains(reused))
  }

  @Test func domainUnmapInvalidatesEveryPASIDAndNestedChildren() throws {
    let (core, _) = try core(strict: true)
    let stage2 = try core.allocateDomain(.paging)
    try stage2.map(
      IOVA(0x4000_0000), to: PhysicalAddress(0x7_0000_0000), size: 0x1000, protection: .readWrite)
    let nested = try core.allocateDomain(.nested, parent: stage2)
    try nested.map(IOVA(0x1000), to: PhysicalAddress(0x4000_0000), size: 0x1000, protection: .readWrite)
    try core.attachDevice(nested, to: device)
    #expect(
      try core.translate(device: device, pasid: nil, iova: IOVA(0x1000), access: .read).get().physical
        == PhysicalAddress(0x7_0000_0000))
    // Changing stage 2 must drop the nested domain's cached combined translation.
    #expect(try stage2.unmap(IOVA(0x4000_0000), size: 0x1000) == 0x1000)
    guard
      case .failure(let fault) = core.translate(device: device, pasid: nil, iova: IOVA(0x1000), access: .read)
    else {
      Issue.record("nested translation survived a stage-2 unmap")
      return
    }
    #expect(fault.reason == .notMapped)
  }

  @Test func dmaAPIOnANonDMADomainIsEINVAL() throws {
    let (core, _) = try core(strict: true)
    let paging = try core.allocateDomain(.paging)
    try core.attachDevice(paging, to: device)
    #expect(throws: IOMMUError.self) {
      try core.dmaMap(device: device, physical: PhysicalAddress(0x1000), size: 0x1000, protection: .read)
    }
    do {
      _ = try core.dmaMap(device: device, physical: PhysicalAddress(0x1000), size: 0x1000, protection: .read)
    } catch {
      #expect(error.errno == .EINVAL)
    }
  }

  @Test func pageTablesLiveInTheTablePool() throws {
    let (core, pool) = try core(strict: true)
    let before = pool.allocatedPages
    let iova = try core.dmaMap(
      device: device, physical: PhysicalAddress(0x5_0000_0000), size: 0x1000, protection: .read)
    #expect(pool.allocatedPages > before)
    let afterMap = pool.allocatedPages
    try core.dmaUnmap(device: device, iova: iova, size: 0x1000)
    // A page-sized unmap keeps its tables for the next map (Linux VT-d frees only fully covered
    // tables), so the next map of that IOVA region needs no table page.
    #expect(pool.allocatedPages == afterMap)
    _ = try core.dmaMap(
      device: device, physical: PhysicalAddress(0x5_0000_1000), size: 0x1000, protection: .read)
    #expect(pool.allocatedPages == afterMap)
  }

  @Test func svaPageTableChangesInvalidateTheIOTLB() throws {
    let pool = try TablePagePool(maxPages: 64)
    let core = try IOMMUCore(configuration: .init(strict: true), tableMemory: pool)
    try core.addDevice(DeviceDescription(device, maxPASID: 1 << 10))
    let space = ProcessAddressSpace(id: AddressSpaceID(rawValue: 1))
    try space.map(VirtualAddress(0x7000_0000), to: PhysicalAddress(0x2_0000_0000), writable: true)
    let bond = try core.svaBind(device: device, addressSpace: space)
    let pasid = bond.pasid
    _ = try core.translate(device: device, pasid: pasid, iova: IOVA(0x7000_0000), access: .write).get()
    #expect(core.iotlb.count == 1)
    #expect(space.unmap(VirtualAddress(0x7000_0000), size: 0x1000) == 1)
    #expect(core.iotlb.count == 0)
    guard
      case .failure = core.translate(device: device, pasid: pasid, iova: IOVA(0x7000_0000), access: .write)
    else {
      Issue.record("stale SVA translation after the CPU page table changed")
      return
    }
  }
}
