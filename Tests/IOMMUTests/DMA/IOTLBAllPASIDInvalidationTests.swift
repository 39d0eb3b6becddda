import IOMMU
import Testing

/// A strict unmap invalidates its range for every PASID of the domain; the IOTLB does it by probing
/// the PASIDs that have entries, and must remove exactly those entries.
@Suite struct IOTLBAllPASIDInvalidationTests {
  func translation(_ physical: UInt64) -> IOTranslation {
    IOTranslation(physical: PhysicalAddress(physical), protection: .readWrite, pageSize: .size4K)
  }

  @Test func rangeInvalidationForAllPASIDsRemovesExactlyTheRange() {
    let iotlb = IOTLB(capacity: 256)
    let domain = DomainID(rawValue: 7)
    let other = DomainID(rawValue: 8)
    for pasid in [PASID.noPASID, PASID(5), PASID(900)] {
      for page in 0..<4 as Range<UInt64> {
        iotlb.insert(
          domain: domain, pasid: pasid, iova: IOVA(page << 12),
          translation: translation(0x10_0000 + page << 12))
      }
    }
    iotlb.insert(domain: other, pasid: .noPASID, iova: IOVA(0x1000), translation: translation(0x9000))
    #expect(iotlb.count == 13)
    iotlb.invalidate(domain: domain, pasid: nil, range: IOVA(0x1000)..<IOVA(0x3000))
    // Pages 1 and 2 of each of the three PASIDs are gone; pages 0 and 3 and the other domain stay.
    #expect(iotlb.count == 7)
    #expect(iotlb.invalidatedEntries == 6)
    for pasid in [PASID.noPASID, PASID(5), PASID(900)] {
      #expect(iotlb.lookup(domain: domain, pasid: pasid, iova: IOVA(0x1000)) == nil)
      #expect(iotlb.lookup(domain: domain, pasid: pasid, iova: IOVA(0x2000)) == nil)
      #expect(iotlb.lookup(domain: domain, pasid: pasid, iova: IOVA(0x0000)) != nil)
      #expect(iotlb.lookup(domain: domain, pasid: pasid, iova: IOVA(0x3000)) != nil)
    }
    #expect(
      iotlb.lookup(domain: other, pasid: .noPASID, iova: IOVA(0x1000))?.physical == PhysicalAddress(0x9000))
  }

  @Test func bookkeepingSurvivesEvictionAndSweeps() {
    let iotlb = IOTLB(capacity: 8)
    let domain = DomainID(rawValue: 1)
    for page in 0..<64 as Range<UInt64> {
      iotlb.insert(
        domain: domain, pasid: PASID(UInt32(page % 3)), iova: IOVA(page << 12),
        translation: translation(page << 12))
    }
    #expect(iotlb.count == 8)
    // A large range falls back to a sweep; a small one probes; both leave nothing of the domain.
    iotlb.invalidate(domain: domain, pasid: nil, range: IOVA(0)..<IOVA(64 << 12))
    #expect(iotlb.count == 0)
    iotlb.insert(domain: domain, pasid: PASID(2), iova: IOVA(0x5000), translation: translation(0x5000))
    iotlb.invalidate(domain: domain, pasid: nil, range: IOVA(0x5000)..<IOVA(0x6000))
    #expect(iotlb.count == 0)
  }
}
