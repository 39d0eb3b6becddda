import IOMMU
import Testing

/// Edge cases of the IOTLB's slot layout: (domain, PASID) and (leaf base, size) are two separate key
/// words, an empty slot is one whose key word is 0, and the 4 KiB probe is inlined into callers.
@Suite struct IOTLBLayoutTests {
  func leaf(_ physical: UInt64, _ size: PageSize = .size4K, _ protection: IOProtection = .readWrite)
    -> IOTranslation
  {
    IOTranslation(physical: PhysicalAddress(physical), protection: protection, pageSize: size)
  }

  @Test func domainZeroPASIDZeroAtIOVAZeroIsAnEntryNotAnEmptySlot() {
    let tlb = IOTLB(capacity: 4)
    let d0 = DomainID(rawValue: 0)
    tlb.insert(domain: d0, pasid: .noPASID, iova: IOVA(0), translation: leaf(0x7000, .size4K, .read))
    tlb.insert(domain: d0, pasid: .noPASID, iova: IOVA(0), translation: leaf(0x4000_0000, .size1G))
    #expect(tlb.count == 2)
    #expect(tlb.lookup(domain: d0, pasid: .noPASID, iova: IOVA(0xABC)) == leaf(0x7ABC, .size4K, .read))
    #expect(tlb.lookup(domain: d0, pasid: .noPASID, iova: IOVA(0x1000)) == leaf(0x4000_1000, .size1G))
    tlb.invalidate(domain: d0, pasid: .noPASID, range: IOVA(0)..<IOVA(0x1000))
    #expect(tlb.count == 0 && tlb.invalidatedEntries == 2)
  }

  @Test func everyProtectionBitAndTheTopOfTheAddressSpaceSurvive() {
    let tlb = IOTLB(capacity: 8)
    let d = DomainID(rawValue: UInt32.max)
    let p = PASID(PASID.limit - 1)
    let all: IOProtection = [.read, .write, .shared]
    tlb.insert(domain: d, pasid: p, iova: IOVA(UInt64.max), translation: leaf(UInt64.max, .size4K, all))
    tlb.insert(domain: d, pasid: p, iova: IOVA(UInt64.max - 0x20_0000), translation: leaf(0x5F_FFFF, .size2M))
    #expect(
      tlb.lookup(domain: d, pasid: p, iova: IOVA(UInt64.max - 0xFFF))
        == leaf(UInt64.max - 0xFFF, .size4K, all))
    #expect(tlb.lookup(domain: d, pasid: p, iova: IOVA(UInt64.max - 0x3F_FFFF))?.pageSize == .size2M)
    #expect(tlb.lookup(domain: DomainID(rawValue: 0), pasid: p, iova: IOVA(UInt64.max)) == nil)
    tlb.invalidate(domain: d, pasid: p, range: IOVA(UInt64.max - 0xFFF)..<IOVA(UInt64.max))
    #expect(tlb.lookup(domain: d, pasid: p, iova: IOVA(UInt64.max)) == nil)
    #expect(tlb.count == 1)
  }

  @Test func aPASIDBeyondTwentyBitsIsNeverCachedAndAlwaysMisses() {
    let tlb = IOTLB(capacity: 8)
    let d = DomainID(rawValue: 1)
    tlb.insert(domain: d, pasid: PASID(5), iova: IOVA(0x1000), translation: leaf(0x1000))
    #expect(
      !tlb.insert(domain: d, pasid: PASID(PASID.limit + 5), iova: IOVA(0x1000), translation: leaf(0x2000)))
    #expect(tlb.lookup(domain: d, pasid: PASID(PASID.limit + 5), iova: IOVA(0x1000)) == nil)
    #expect(tlb.lookup(domain: d, pasid: PASID(UInt32.max), iova: IOVA(0x1000)) == nil)
    #expect(tlb.misses == 2 && tlb.hits == 0 && tlb.count == 1)
    // A range invalidation naming such a PASID removes nothing.
    tlb.invalidate(domain: d, pasid: PASID(PASID.limit + 5), range: IOVA(0)..<IOVA(0x10_0000))
    #expect(tlb.count == 1)
  }

  @Test func sizeCountsFollowInsertReplaceEvictAndInvalidate() {
    let tlb = IOTLB(capacity: 3)
    let d = DomainID(rawValue: 3)
    tlb.insert(domain: d, pasid: .noPASID, iova: IOVA(0x1000), translation: leaf(0x1000))
    tlb.insert(domain: d, pasid: .noPASID, iova: IOVA(0x20_0000), translation: leaf(0x20_0000, .size2M))
    tlb.insert(domain: d, pasid: .noPASID, iova: IOVA(0x20_0000), translation: leaf(0x40_0000, .size2M))
    #expect(tlb.entries(of: .size4K) == 1 && tlb.entries(of: .size2M) == 1 && tlb.count == 2)
    tlb.insert(domain: d, pasid: .noPASID, iova: IOVA(0x4000_0000), translation: leaf(0, .size1G))
    tlb.insert(domain: d, pasid: PASID(1), iova: IOVA(0x1000), translation: leaf(0x1000))
    #expect(tlb.evictions == 1 && tlb.count == 3)
    let total = PageSize.allCases.reduce(0) { $0 + tlb.entries(of: $1) }
    #expect(total == 3)
    tlb.invalidate(domain: d)
    #expect(PageSize.allCases.allSatisfy { tlb.entries(of: $0) == 0 })
    // With no 4 KiB entries left, a 2 MiB leaf is still found (the inline 4 KiB probe is skipped).
    tlb.insert(domain: d, pasid: .noPASID, iova: IOVA(0x20_0000), translation: leaf(0x60_0000, .size2M))
    #expect(
      tlb.lookup(domain: d, pasid: .noPASID, iova: IOVA(0x20_1234))?.physical == PhysicalAddress(0x60_1234))
  }

  /// Random inserts of all three sizes, evictions and every invalidation kind at a small capacity:
  /// a hit is never wrong (it is the last leaf inserted for that key, whichever size answers first),
  /// the per-size counts add up, and the table never exceeds its capacity.
  @Test(arguments: [UInt64(7), 4242])
  func churnNeverAnswersWrongly(seed: UInt64) {
    var rng = SplitMix64(seed: seed)
    let tlb = IOTLB(capacity: 48)
    struct Key: Hashable {
      var domain: UInt32
      var pasid: UInt32
      var size: PageSize
      var base: UInt64
    }
    var model: [Key: UInt64] = [:]  // superset of what the TLB holds (evictions drop entries)
    let sizes: [PageSize] = [.size4K, .size4K, .size4K, .size2M, .size1G]
    for _ in 0..<20_000 {
      let d = UInt32(rng.next() % 3)
      let p = UInt32(rng.next() % 3)
      let size = sizes[Int(rng.next() % 5)]
      let iova = (rng.next() % (1 << 32)) & ~(size.bytes - 1)
      switch rng.next() % 20 {
      case 0..<12:
        let physical = (rng.next() % (1 << 30)) << 12
        tlb.insert(
          domain: DomainID(rawValue: d), pasid: PASID(p), iova: IOVA(iova), translation: leaf(physical, size))
        model[Key(domain: d, pasid: p, size: size, base: iova)] = physical
      case 12..<18:
        let probe = iova | (rng.next() & (size.bytes - 1))
        if let hit = tlb.lookup(domain: DomainID(rawValue: d), pasid: PASID(p), iova: IOVA(probe)) {
          let key = Key(domain: d, pasid: p, size: hit.pageSize, base: probe & ~(hit.pageSize.bytes - 1))
          #expect(model[key].map { $0 + (probe & (hit.pageSize.bytes - 1)) } == hit.physical.rawValue)
        }
      case 18:
        tlb.invalidate(domain: DomainID(rawValue: d), pasid: PASID(p))
        model = model.filter { !($0.key.domain == d && $0.key.pasid == p) }
      default:
        // Small ranges with a PASID take the leaf-by-leaf path; the rest sweep the table.
        let withPASID = rng.next() % 2 == 0
        let end = iova + (rng.next() % (withPASID ? 1 << 16 : 1 << 22)) + 1
        tlb.invalidate(
          domain: DomainID(rawValue: d), pasid: withPASID ? PASID(p) : nil, range: IOVA(iova)..<IOVA(end))
        model = model.filter {
          !($0.key.domain == d && (!withPASID || $0.key.pasid == p) && $0.key.base < end
            && $0.key.base + $0.key.size.bytes > iova)
        }
      }
      #expect(tlb.count <= 48)
    }
    #expect(PageSize.allCases.reduce(0) { $0 + tlb.entries(of: $1) } == tlb.count)
    #expect(tlb.count <= model.count)
  }
}
