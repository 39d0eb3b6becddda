import IOMMU
import Testing

@Suite struct IOTLBTests {
  let d1 = DomainID(rawValue: 1)
  let d2 = DomainID(rawValue: 2)
  let p0 = PASID.noPASID
  let p5 = PASID(5)

  func leaf(_ physical: UInt64, _ size: PageSize = .size4K, _ protection: IOProtection = .readWrite)
    -> IOTranslation
  {
    IOTranslation(physical: PhysicalAddress(physical), protection: protection, pageSize: size)
  }

  @Test func missThenHitAnywhereInTheLeaf() {
    let tlb = IOTLB(capacity: 16)
    #expect(tlb.lookup(domain: d1, pasid: p0, iova: IOVA(0x1000)) == nil)
    tlb.insert(domain: d1, pasid: p0, iova: IOVA(0x1234), translation: leaf(0x9234, .size4K, .read))
    let hit = tlb.lookup(domain: d1, pasid: p0, iova: IOVA(0x1FF0))
    #expect(hit == leaf(0x9FF0, .size4K, .read))
    #expect(tlb.lookup(domain: d1, pasid: p0, iova: IOVA(0x2000)) == nil)
    // Tags separate domains and PASIDs.
    #expect(tlb.lookup(domain: d2, pasid: p0, iova: IOVA(0x1000)) == nil)
    #expect(tlb.lookup(domain: d1, pasid: p5, iova: IOVA(0x1000)) == nil)
    #expect(tlb.lookup(domain: d1, pasid: PASID(PASID.limit), iova: IOVA(0x1000)) == nil)
    #expect(tlb.hits == 1 && tlb.misses == 5)
  }

  @Test func largeLeavesHitForEveryAddressInside() {
    let tlb = IOTLB(capacity: 16)
    tlb.insert(domain: d1, pasid: p0, iova: IOVA(0x20_1000), translation: leaf(0x4020_1000, .size2M))
    tlb.insert(domain: d1, pasid: p0, iova: IOVA(0x8000_0000), translation: leaf(0x1_0000_0000, .size1G))
    #expect(
      tlb.lookup(domain: d1, pasid: p0, iova: IOVA(0x20_0000))?.physical == PhysicalAddress(0x4020_0000))
    #expect(
      tlb.lookup(domain: d1, pasid: p0, iova: IOVA(0x3F_FFFF))?.physical == PhysicalAddress(0x403F_FFFF))
    #expect(tlb.lookup(domain: d1, pasid: p0, iova: IOVA(0x40_0000)) == nil)
    let huge = tlb.lookup(domain: d1, pasid: p0, iova: IOVA(0xBFFF_F123))
    #expect(huge == leaf(0x1_3FFF_F123, .size1G))
    #expect(tlb.entries(of: .size2M) == 1 && tlb.entries(of: .size1G) == 1)
    // A range invalidation that overlaps only part of a large leaf removes the whole leaf.
    tlb.invalidate(domain: d1, pasid: p0, range: IOVA(0x30_0000)..<IOVA(0x30_1000))
    #expect(tlb.lookup(domain: d1, pasid: p0, iova: IOVA(0x20_0000)) == nil)
    tlb.invalidate(domain: d1, pasid: nil, range: IOVA(0xA000_0000)..<IOVA(0xA000_1000))
    #expect(tlb.lookup(domain: d1, pasid: p0, iova: IOVA(0x8000_0000)) == nil)
    #expect(tlb.count == 0)
  }

  @Test func rangeInvalidationRemovesExactlyTheOverlap() {
    let tlb = IOTLB(capacity: 64)
    for page: UInt64 in 0..<16 {
      tlb.insert(domain: d1, pasid: p0, iova: IOVA(page << 12), translation: leaf(0x10_0000 + page << 12))
      tlb.insert(domain: d1, pasid: p5, iova: IOVA(page << 12), translation: leaf(0x20_0000 + page << 12))
      tlb.insert(domain: d2, pasid: p0, iova: IOVA(page << 12), translation: leaf(0x30_0000 + page << 12))
    }
    // With a PASID: only that PASID's entries in [4, 8) pages.
    tlb.invalidate(domain: d1, pasid: p0, range: IOVA(0x4000)..<IOVA(0x8000))
    for page: UInt64 in 0..<16 {
      let gone = (4..<8).contains(page)
      #expect((tlb.lookup(domain: d1, pasid: p0, iova: IOVA(page << 12)) == nil) == gone)
      #expect(tlb.lookup(domain: d1, pasid: p5, iova: IOVA(page << 12)) != nil)
    }
    // Without one: every PASID of the domain, no other domain; a partial page still counts.
    tlb.invalidate(domain: d1, pasid: nil, range: IOVA(0xA800)..<IOVA(0xC001))
    for page: UInt64 in 0..<16 {
      let gone = (10...12).contains(page)
      #expect((tlb.lookup(domain: d1, pasid: p5, iova: IOVA(page << 12)) == nil) == gone)
      #expect(tlb.lookup(domain: d2, pasid: p0, iova: IOVA(page << 12)) != nil)
    }
    #expect(tlb.invalidatedEntries == 4 + 6)
  }

  @Test func pasidDomainAndGlobalInvalidation() {
    let tlb = IOTLB(capacity: 64)
    for page: UInt64 in 0..<8 {
      tlb.insert(domain: d1, pasid: p0, iova: IOVA(page << 12), translation: leaf(page << 12))
      tlb.insert(domain: d1, pasid: p5, iova: IOVA(page << 21), translation: leaf(page << 21, .size2M))
      tlb.insert(domain: d2, pasid: p5, iova: IOVA(page << 12), translation: leaf(page << 12))
    }
    tlb.invalidate(domain: d1, pasid: p5)
    #expect(tlb.count == 16)
    #expect(tlb.lookup(domain: d1, pasid: p5, iova: IOVA(1 << 21)) == nil)
    #expect(tlb.lookup(domain: d2, pasid: p5, iova: IOVA(1 << 12)) != nil)
    tlb.invalidate(domain: d2)
    #expect(tlb.count == 8)
    #expect(tlb.lookup(domain: d1, pasid: p0, iova: IOVA(0x3000)) != nil)
    tlb.invalidateAll()
    #expect(tlb.count == 0)
    #expect(tlb.lookup(domain: d1, pasid: p0, iova: IOVA(0x3000)) == nil)
    #expect(tlb.invalidations == 3)
  }

  @Test func evictionKeepsTheCapacityAndIsCounted() {
    let tlb = IOTLB(capacity: 32)
    for page: UInt64 in 0..<100 {
      tlb.insert(domain: d1, pasid: p0, iova: IOVA(page << 12), translation: leaf(page << 12))
      #expect(tlb.count <= 32)
    }
    #expect(tlb.count == 32)
    #expect(tlb.evictions == 68)
    let present = (0..<100).filter { tlb.lookup(domain: d1, pasid: p0, iova: IOVA(UInt64($0) << 12)) != nil }
    #expect(present.count == 32)
    // Re-inserting a present leaf replaces it without evicting.
    let before = tlb.evictions
    tlb.insert(
      domain: d1, pasid: p0, iova: IOVA(UInt64(present[0]) << 12),
      translation: leaf(0xDEAD_0000, .size4K, .read))
    #expect(tlb.evictions == before)
    #expect(
      tlb.lookup(domain: d1, pasid: p0, iova: IOVA(UInt64(present[0]) << 12))?.physical.rawValue
        == 0xDEAD_0000)
  }

  @Test(arguments: [UInt64(3), 99, 2024])
  func randomOperationsMatchAReferenceMap(seed: UInt64) {
    var rng = SplitMix64(seed: seed)
    let tlb = IOTLB(capacity: 4096)  // large enough that nothing is evicted
    var model: [String: UInt64] = [:]  // "domain/pasid/page" → physical page
    func key(_ d: UInt32, _ p: UInt32, _ page: UInt64) -> String { "\(d)/\(p)/\(page)" }
    for _ in 0..<4000 {
      let d = UInt32(rng.next() % 3)
      let p = UInt32(rng.next() % 3)
      let page = rng.next() % 512
      switch rng.next() % 10 {
      case 0..<6:
        let physical = (rng.next() % (1 << 30)) << 12
        tlb.insert(
          domain: DomainID(rawValue: d), pasid: PASID(p), iova: IOVA(page << 12), translation: leaf(physical))
        model[key(d, p, page)] = physical
      case 6..<8:
        let count = rng.next() % 80 + 1
        let withPASID = rng.next() % 2 == 0
        tlb.invalidate(
          domain: DomainID(rawValue: d), pasid: withPASID ? PASID(p) : nil,
          range: IOVA(page << 12)..<IOVA((page + count) << 12))
        for q: UInt32 in 0..<3 where !withPASID || q == p {
          for victim in page..<(page + count) { model[key(d, q, victim)] = nil }
        }
      default:
        tlb.invalidate(domain: DomainID(rawValue: d), pasid: PASID(p))
        for victim: UInt64 in 0..<512 { model[key(d, p, victim)] = nil }
      }
    }
    var mismatches = 0
    for d: UInt32 in 0..<3 {
      for p: UInt32 in 0..<3 {
        for page: UInt64 in 0..<512 {
          let got = tlb.lookup(domain: DomainID(rawValue: d), pasid: PASID(p), iova: IOVA(page << 12 | 0x10))
          if got?.physical.rawValue != model[key(d, p, page)].map({ $0 | 0x10 }) { mismatches += 1 }
        }
      }
    }
    #expect(mismatches == 0)
    #expect(tlb.count == model.count)
  }
}

@Suite struct IOTLBGatherTests {
  @Test func gathersWithTheSameRangesAreEqual() {
    var oneByOne = IOTLBGather()
    for page: UInt64 in [5, 1, 3, 2, 4] { oneByOne.add(IOVA(page << 12), size: 4096) }
    var atOnce = IOTLBGather()
    atOnce.add(IOVA(0x1000), size: 0x5000)
    #expect(oneByOne == atOnce)
    #expect(oneByOne.ranges == [IOVA(0x1000)..<IOVA(0x6000)])
    atOnce.add(IOVA(0x1000), size: 0x1000, pageSize: .size2M)
    #expect(oneByOne != atOnce)
  }

  @Test func contiguousAndOverlappingRangesMerge() {
    var gather = IOTLBGather()
    #expect(gather.isEmpty)
    gather.add(IOVA(0x1000), size: 0x1000)
    gather.add(IOVA(0x2000), size: 0x1000)  // adjacent
    gather.add(IOVA(0x8000), size: 0x2000)  // disjoint
    gather.add(IOVA(0x2800), size: 0x1000)  // overlapping
    gather.add(IOVA(0x5000), size: 0, pageSize: .size1G)  // empty: ignored
    #expect(gather.ranges == [IOVA(0x1000)..<IOVA(0x3800), IOVA(0x8000)..<IOVA(0xA000)])
    gather.add(IOVA(0x3800), size: 0x4800, pageSize: .size2M)  // bridges both
    #expect(gather.ranges == [IOVA(0x1000)..<IOVA(0xA000)])
    #expect(gather.freedPageSizes == [.size4K, .size2M])
    gather.add(IOVA(UInt64.max - 0xFFF), size: 0x2000)
    #expect(gather.ranges.last == IOVA(UInt64.max - 0xFFF)..<IOVA(UInt64.max))
  }

  @Test func flushInvalidatesOnlyTheGatheredRangesInOneCall() {
    let tlb = IOTLB(capacity: 64)
    let domain = DomainID(rawValue: 7)
    for page: UInt64 in 0..<16 {
      tlb.insert(
        domain: domain, pasid: .noPASID, iova: IOVA(page << 12),
        translation: IOTranslation(
          physical: PhysicalAddress(page << 12), protection: .read, pageSize: .size4K))
    }
    var gather = IOTLBGather()
    for page: UInt64 in [2, 3, 4, 9] { gather.add(IOVA(page << 12), size: 4096) }
    #expect(gather.flush(into: tlb, domain: domain, pasid: nil) == 2)
    #expect(gather.isEmpty && gather.freedPageSizes.isEmpty)
    for page: UInt64 in 0..<16 {
      let gone = [2, 3, 4, 9].contains(page)
      #expect((tlb.lookup(domain: domain, pasid: .noPASID, iova: IOVA(page << 12)) == nil) == gone)
    }
    #expect(tlb.invalidations == 2)
  }
}
