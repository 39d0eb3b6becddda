import GuestABI
import HostPlatform
import IOMMU
import PCIe
import Testing

/// The vIOMMU's cache obeys the guest's invalidations exactly: after the guest changes its tables,
/// the old translation keeps being used until an invalidation that covers it — and not after.
@Suite struct VIOMMUInvalidationTests {
  let rid = RequesterID(rawValue: 0x0308)
  let otherRID = RequesterID(rawValue: 0x0410)
  let domain = DomainID(rawValue: 1)
  let iova: UInt64 = 0x1000_0000
  let oldGPA: UInt64 = 0x40_0000_1000
  let newGPA: UInt64 = 0x40_0000_2000

  /// A rig with a 48-bit table mapping `iova` → `oldGPA` read-write, attached for `rid` (no PASID)
  /// under `domain`.
  func makeRig() throws -> (VIOMMURig, RadixIOPageTable) {
    let rig = VIOMMURig()
    let table = try rig.makeTable()
    try table.map(IOVA(iova), to: PhysicalAddress(oldGPA), size: 0x1000, protection: .readWrite)
    try rig.viommu.execute(
      .attach(requester: rid, pasid: nil, domain: domain, root: table.root, inputAddressBits: 48))
    return (rig, table)
  }

  /// The guest-physical address a read of `address` reaches, or the fault.
  func read(
    _ rig: VIOMMURig, _ address: UInt64, requester: RequesterID? = nil, pasid: PASID? = nil
  ) -> Result<UInt64, VIOMMUFault> {
    rig.viommu.translate(requester: requester ?? rid, pasid: pasid, iova: IOVA(address), access: .read).map {
      $0.guestPhysical.rawValue
    }
  }

  /// The guest moves `iova` to `newGPA` in its tables, without invalidating.
  func remap(_ table: RadixIOPageTable, _ address: UInt64, to gpa: UInt64, size: UInt64 = 0x1000) throws {
    #expect(try table.unmap(IOVA(address), size: size) == size)
    try table.map(IOVA(address), to: PhysicalAddress(gpa), size: size, protection: .readWrite)
  }

  @Test func staleUntilTheMatchingRangeInvalidation() throws {
    let (rig, table) = try makeRig()
    #expect(read(rig, iova + 0x10) == .success(oldGPA + 0x10))
    #expect(read(rig, iova + 0x20) == .success(oldGPA + 0x20))
    #expect(rig.viommu.stage1Walks == 1)
    #expect(rig.viommu.iotlb.hits == 1)

    try remap(table, iova, to: newGPA)
    #expect(read(rig, iova) == .success(oldGPA), "stale: the guest has not invalidated")
    // Invalidations that do not cover the entry leave it stale.
    let misses: [VIOMMUCommand] = [
      .invalidateRange(domain: domain, pasid: nil, iova: IOVA(iova + 0x1000), size: 0x1000),
      .invalidateRange(domain: domain, pasid: nil, iova: IOVA(iova - 0x1000), size: 0x1000),
      .invalidateRange(domain: DomainID(rawValue: 2), pasid: nil, iova: IOVA(iova), size: 0x1000),
      .invalidateRange(domain: domain, pasid: PASID(5), iova: IOVA(iova), size: 0x1000),
      .invalidatePASID(domain: domain, pasid: PASID(5)),
      .invalidateDomain(DomainID(rawValue: 2)),
    ]
    for command in misses {
      try rig.viommu.execute(command)
      #expect(read(rig, iova) == .success(oldGPA), "still stale after \(command)")
    }
    #expect(rig.viommu.stage1Walks == 1)

    try rig.viommu.execute(.invalidateRange(domain: domain, pasid: nil, iova: IOVA(iova), size: 0x1000))
    #expect(read(rig, iova + 0x10) == .success(newGPA + 0x10))
    #expect(rig.viommu.stage1Walks == 2)
  }

  @Test func anUnmappedPageKeepsTranslatingUntilInvalidated() throws {
    let (rig, table) = try makeRig()
    #expect(read(rig, iova) == .success(oldGPA))
    #expect(try table.unmap(IOVA(iova), size: 0x1000) == 0x1000)
    #expect(read(rig, iova) == .success(oldGPA), "stale: used after the guest's unmap")
    try rig.viommu.execute(.invalidateDomain(domain))
    #expect(read(rig, iova) == .failure(.stage1NotPresent(level: 1)))
  }

  @Test func pasidInvalidationsAreSelective() throws {
    let (rig, table) = try makeRig()
    for pasid in [PASID(5), PASID(6)] {
      try rig.viommu.execute(
        .attach(requester: rid, pasid: pasid, domain: domain, root: table.root, inputAddressBits: 48))
    }
    for pasid in [nil, PASID(5), PASID(6)] { #expect(read(rig, iova, pasid: pasid) == .success(oldGPA)) }
    #expect(rig.viommu.stage1Walks == 3, "cached per PASID")
    try remap(table, iova, to: newGPA)

    try rig.viommu.execute(.invalidatePASID(domain: domain, pasid: PASID(5)))
    #expect(read(rig, iova, pasid: PASID(5)) == .success(newGPA))
    #expect(read(rig, iova, pasid: PASID(6)) == .success(oldGPA))
    #expect(read(rig, iova) == .success(oldGPA))

    try rig.viommu.execute(.invalidateRange(domain: domain, pasid: PASID(6), iova: IOVA(iova), size: 0x1000))
    #expect(read(rig, iova, pasid: PASID(6)) == .success(newGPA))
    #expect(read(rig, iova) == .success(oldGPA))

    // Without PV a range invalidation covers every PASID and the requests without one.
    try remap(table, iova, to: oldGPA)
    try rig.viommu.execute(.invalidateRange(domain: domain, pasid: nil, iova: IOVA(iova), size: 0x1000))
    for pasid in [nil, PASID(5), PASID(6)] { #expect(read(rig, iova, pasid: pasid) == .success(oldGPA)) }
  }

  @Test func domainAndGlobalInvalidations() throws {
    let (rig, table) = try makeRig()
    let second = try rig.makeTable()
    try second.map(IOVA(iova), to: PhysicalAddress(oldGPA), size: 0x1000, protection: .readWrite)
    try rig.viommu.execute(
      .attach(
        requester: otherRID, pasid: nil, domain: DomainID(rawValue: 2), root: second.root,
        inputAddressBits: 48))
    #expect(read(rig, iova) == .success(oldGPA))
    #expect(read(rig, iova, requester: otherRID) == .success(oldGPA))
    try remap(table, iova, to: newGPA)
    try remap(second, iova, to: newGPA)

    try rig.viommu.execute(.invalidateDomain(DomainID(rawValue: 2)))
    #expect(read(rig, iova, requester: otherRID) == .success(newGPA))
    #expect(read(rig, iova) == .success(oldGPA))
    try rig.viommu.execute(.invalidateAll)
    #expect(read(rig, iova) == .success(newGPA))
  }

  @Test func anOverlappingInvalidationDropsALargeLeafWhole() throws {
    let (rig, table) = try makeRig()
    try table.map(IOVA(0x4000_0000), to: PhysicalAddress(0x40_0020_0000), size: 0x20_0000, protection: .read)
    #expect(read(rig, 0x4000_0000) == .success(0x40_0020_0000))
    try remap(table, 0x4000_0000, to: 0x40_0040_0000, size: 0x20_0000)
    #expect(read(rig, 0x401F_F000) == .success(0x40_003F_F000), "stale, from the cached 2 MiB leaf")
    try rig.viommu.execute(
      .invalidateRange(domain: domain, pasid: nil, iova: IOVA(0x4010_0000), size: 0x1000))
    #expect(read(rig, 0x401F_F000) == .success(0x40_005F_F000))
    #expect(read(rig, 0x4000_0000) == .success(0x40_0040_0000))
  }

  @Test func staleRightsToo() throws {
    let (rig, table) = try makeRig()
    let write = { rig.viommu.translate(requester: rid, pasid: nil, iova: IOVA(iova), access: .write) }
    #expect(try write().get().guestPhysical == PhysicalAddress(oldGPA))
    #expect(try table.unmap(IOVA(iova), size: 0x1000) == 0x1000)
    try table.map(IOVA(iova), to: PhysicalAddress(oldGPA), size: 0x1000, protection: .read)
    #expect(try write().get().protection == .readWrite, "the cached entry still grants write")
    try rig.viommu.execute(.invalidateRange(domain: domain, pasid: nil, iova: IOVA(iova), size: 0x1000))
    #expect(write() == .failure(.permission))
  }

  @Test func detachDoesNotInvalidate() throws {
    let (rig, table) = try makeRig()
    #expect(read(rig, iova) == .success(oldGPA))
    try rig.viommu.execute(.detach(requester: rid, pasid: nil))
    #expect(read(rig, iova) == .failure(.noAttachment), "detach takes effect at once")
    try remap(table, iova, to: newGPA)
    try rig.viommu.execute(
      .attach(requester: rid, pasid: nil, domain: domain, root: table.root, inputAddressBits: 48))
    #expect(read(rig, iova) == .success(oldGPA), "the domain's entries outlived the detach")
    try rig.viommu.execute(.invalidateDomain(domain))
    #expect(read(rig, iova) == .success(newGPA))
  }

  @Test func aReusedDomainIDServesTheOldTableUntilInvalidated() throws {
    let (rig, _) = try makeRig()
    let other = try rig.makeTable()
    try other.map(IOVA(iova), to: PhysicalAddress(newGPA), size: 0x1000, protection: .readWrite)
    #expect(read(rig, iova) == .success(oldGPA))
    try rig.viommu.execute(.detach(requester: rid, pasid: nil))
    try rig.viommu.execute(
      .attach(requester: rid, pasid: nil, domain: domain, root: other.root, inputAddressBits: 48))
    #expect(read(rig, iova) == .success(oldGPA), "the guest reused the domain ID without invalidating it")
    try rig.viommu.execute(.invalidateDomain(domain))
    #expect(read(rig, iova) == .success(newGPA))
  }

  @Test func stage2IsNeverStale() throws {
    let (rig, _) = try makeRig()
    #expect(read(rig, iova) == .success(oldGPA))
    rig.memory.dataHoles.insert(oldGPA >> 21)
    #expect(read(rig, iova + 8) == .failure(.stage2OutputNotMapped(output: PhysicalAddress(oldGPA + 8))))
    rig.memory.dataHoles.removeAll()
    #expect(
      rig.viommu.translate(requester: rid, pasid: nil, iova: IOVA(iova), access: .read).map(\.hostPhysical)
        == .success(VIOMMURig.dataHost(oldGPA)))
    #expect(rig.viommu.stage1Walks == 1, "both answers came from the cached stage-1 entry")
  }

  @Test func faultsAreNotCached() throws {
    let (rig, table) = try makeRig()
    #expect(read(rig, iova + 0x1000) == .failure(.stage1NotPresent(level: 1)))
    try table.map(IOVA(iova + 0x1000), to: PhysicalAddress(newGPA), size: 0x1000, protection: .read)
    #expect(read(rig, iova + 0x1000) == .success(newGPA), "a new mapping needs no invalidation")
  }

  @Test func aFullCacheEvictsAndWalksAgain() throws {
    let rig = VIOMMURig(configuration: VIOMMU.Configuration(iotlbCapacity: 4))
    let table = try rig.makeTable()
    try table.map(IOVA(0), to: PhysicalAddress(oldGPA), size: 0x10_0000, protection: .read)
    try rig.viommu.execute(
      .attach(requester: rid, pasid: nil, domain: domain, root: table.root, inputAddressBits: 48))
    for page in 0..<UInt64(64) { #expect(read(rig, page << 12) == .success(oldGPA + page << 12)) }
    #expect(rig.viommu.iotlb.count == 4)
    #expect(rig.viommu.iotlb.evictions == 60)
  }
}
