import IOMMU
import Testing

@Suite struct IOVAAllocatorTests {
  static let page: UInt64 = 4096
  static let fourGiB: UInt64 = 1 << 32

  func make(start: UInt64 = 4096, end: UInt64 = 1 << 32) throws -> IOVAAllocator {
    try IOVAAllocator(granule: Self.page, start: IOVA(start), end: IOVA(end))
  }

  @Test func invalidGeometryIsEINVAL() {
    #expect(throws: IOMMUError.self) { try IOVAAllocator(granule: 3000, start: IOVA(0), end: IOVA(1 << 20)) }
    do {
      _ = try IOVAAllocator(granule: 4096, start: IOVA(8192), end: IOVA(8192))
      Issue.record("empty space accepted")
    } catch {
      #expect(error.errno == .EINVAL)
    }
  }

  @Test func sizesRoundUpToPowerOfTwoGranulesAndAreSizeAligned() throws {
    let allocator = try make()
    for size: UInt64 in [1, 4096, 4097, 3 * 4096, 5 * 4096, 100 * 4096, 1 << 21, (1 << 21) + 1] {
      let iova = try #require(allocator.allocate(size: size, limit: IOVA(Self.fourGiB)))
      let rounded = try #require(allocator.allocationSize(for: size))
      #expect(rounded.nonzeroBitCount == 1 && rounded >= size && rounded / 2 < max(size, 4096))
      #expect(iova.rawValue % rounded == 0, "\(iova) not aligned to 0x\(String(rounded, radix: 16))")
    }
  }

  @Test func allocationIsTopDownBelowTheLimit() throws {
    let allocator = try make()
    let first = try #require(allocator.allocate(size: 4096, limit: IOVA(Self.fourGiB)))
    #expect(first.rawValue == Self.fourGiB - 4096)
    let second = try #require(allocator.allocate(size: 4096, limit: IOVA(Self.fourGiB)))
    #expect(second.rawValue == Self.fourGiB - 8192)
    // An 8-page block skips down to the next 32 KiB boundary.
    let big = try #require(allocator.allocate(size: 8 * 4096, limit: IOVA(Self.fourGiB)))
    #expect(big.rawValue == Self.fourGiB - 2 * 8 * 4096)
    // The limit is exclusive and bounds the end of the block.
    let limited = try #require(allocator.allocate(size: 2 * 4096, limit: IOVA(0x10_0000 + 4096)))
    #expect(limited.rawValue == 0x10_0000 - 8192)
    let unaligned = try #require(allocator.allocate(size: 4096, limit: IOVA(0x20_0000 + 123)))
    #expect(unaligned.rawValue == 0x20_0000 - 4096)
  }

  @Test func reservedRangesAreNeverHandedOut() throws {
    let allocator = try make(end: 0xFF00_0000)
    try allocator.reserve(IOVA(0xFEE0_0000)..<IOVA(0xFEF0_0000))
    var seen: [IOVA] = []
    while let iova = allocator.allocate(size: 4096, limit: IOVA(0xFF00_0000)), seen.count < 4096 + 300 {
      seen.append(iova)
      #expect(!(iova.rawValue >= 0xFEE0_0000 && iova.rawValue < 0xFEF0_0000), "\(iova) is in the MSI window")
    }
    #expect(seen.contains(IOVA(0xFEF0_0000)))
    #expect(seen.contains(IOVA(0xFEDF_F000)))
    // Freeing inside the reserved window is refused, not a crash.
    do {
      try allocator.free(IOVA(0xFEE0_0000), size: 4096)
      Issue.record("freed a reserved IOVA")
    } catch {
      #expect(error.errno == .EINVAL)
    }
  }

  @Test func reservingOverALiveAllocationIsEBUSY() throws {
    let allocator = try make()
    let iova = try #require(allocator.allocate(size: 4096, limit: IOVA(Self.fourGiB)))
    do {
      try allocator.reserve(iova..<iova.advanced(by: 4096))
      Issue.record("reserved over a live IOVA")
    } catch {
      #expect(error.errno == .EBUSY)
    }
    do {
      try allocator.reserve(iova..<iova)
      Issue.record("empty reservation accepted")
    } catch {
      #expect(error.errno == .EINVAL)
    }
  }

  @Test func exhaustionReturnsNil() throws {
    let allocator = try make(start: 0, end: 64 * 4096)
    var count = 0
    while allocator.allocate(size: 4096, limit: IOVA(64 * 4096)) != nil { count += 1 }
    #expect(count == 64)
    #expect(allocator.allocate(size: 4096, limit: IOVA(1 << 40)) == nil)
    #expect(allocator.allocate(size: 0, limit: IOVA(1 << 40)) == nil)
    #expect(allocator.allocate(size: 1 << 40, limit: IOVA(1 << 40)) == nil)
    #expect(allocator.statistics.failures >= 1)
  }

  @Test func limitBelowStartReturnsNil() throws {
    let allocator = try make(start: 0x10_0000)
    #expect(allocator.allocate(size: 4096, limit: IOVA(0x10_0000)) == nil)
    #expect(allocator.allocate(size: 4096, limit: IOVA(0x10_1000)) == IOVA(0x10_0000))
  }

  @Test func freeingGarbageIsEINVALAndChangesNothing() throws {
    let allocator = try make()
    let a = try #require(allocator.allocate(size: 4 * 4096, limit: IOVA(Self.fourGiB)))
    let b = try #require(allocator.allocate(size: 4096, limit: IOVA(Self.fourGiB)))
    let garbage: [(IOVA, UInt64)] = [
      (IOVA(0x1234_5000), 4096),  // never allocated
      (a, 4096),  // wrong size (part of a block)
      (a, 8 * 4096),  // wrong size (too large)
      (a.advanced(by: 4096), 4096),  // inside a block
      (a.advanced(by: 1), 4 * 4096),  // misaligned
      (a, 0),  // empty
      (IOVA(0), 4096),  // below start
      (IOVA(1 << 40), 4096),  // beyond the end
      (IOVA(UInt64.max - 4095), UInt64.max),  // overflowing
    ]
    for (iova, size) in garbage {
      do {
        try allocator.free(iova, size: size)
        Issue.record("free(\(iova), \(size)) accepted")
      } catch {
        #expect(error.errno == .EINVAL)
      }
    }
    #expect(allocator.liveAllocations == 2)
    try allocator.free(a, size: 4 * 4096)
    try allocator.free(b, size: 4096)
    // A double free — of a block now sitting in a magazine — is refused too.
    #expect(throws: IOMMUError.self) { try allocator.free(b, size: 4096) }
    #expect(throws: IOMMUError.self) { try allocator.free(a, size: 4 * 4096) }
    #expect(allocator.liveAllocations == 0)
  }

  @Test func magazinesServeTheFreeAllocatePair() throws {
    let allocator = try make()
    let first = try #require(allocator.allocate(size: 4096, limit: IOVA(Self.fourGiB)))
    try allocator.free(first, size: 4096)
    #expect(allocator.cachedCount == 1)
    // Cached IOVAs stay allocated: the tree hands out the next block, the cache the freed one.
    #expect(!allocator.isAllocated(first, size: 4096))
    for _ in 0..<1000 {
      let again = try #require(allocator.allocate(size: 4096, limit: IOVA(Self.fourGiB)))
      #expect(again == first)
      try allocator.free(again, size: 4096)
    }
    #expect(allocator.statistics.cacheHits == 1000)
    #expect(allocator.statistics.cachedFrees == 1001)
    // A magazine entry above a tighter limit is not used.
    let low = try #require(allocator.allocate(size: 4096, limit: IOVA(0x10_0000)))
    #expect(low.rawValue < 0x10_0000)
    allocator.flushCaches()
    #expect(allocator.cachedCount == 0)
    #expect(allocator.allocate(size: 4096, limit: IOVA(Self.fourGiB)) == first)
  }

  @Test func magazinesRotateThroughTheDepotAndFlushWhenTheTreeIsFull() throws {
    let allocator = try make(start: 0, end: 1024 * 4096)
    var blocks: [IOVA] = []
    while let iova = allocator.allocate(size: 4096, limit: IOVA(1 << 40)) { blocks.append(iova) }
    #expect(blocks.count == 1024)
    for iova in blocks { try allocator.free(iova, size: 4096) }
    #expect(allocator.cachedCount == 1024)
    // An order-1 request finds no room in the tree; the caches are flushed and it succeeds.
    let pair = try #require(allocator.allocate(size: 2 * 4096, limit: IOVA(1 << 40)))
    #expect(pair.rawValue % 8192 == 0)
    #expect(allocator.statistics.cacheFlushes == 1)
    #expect(allocator.cachedCount == 0)
  }

  @Test func largeBlocksBypassTheCaches() throws {
    let allocator = try make(end: 1 << 36)
    let big = try #require(allocator.allocate(size: 1 << 30, limit: IOVA(1 << 36)))
    #expect(big.rawValue == (1 << 36) - (1 << 30))
    #expect(allocator.isAllocated(big, size: 1 << 30))
    try allocator.free(big, size: 1 << 30)
    #expect(allocator.cachedCount == 0)
    #expect(allocator.allocate(size: 1 << 30, limit: IOVA(1 << 36)) == big)
  }

  @Test func thirtyTwoBitFirstThenHigh() throws {
    // The DMA layer's policy expressed on the allocator: a 4 GiB limit first, the device's limit after.
    let allocator = try make(end: 1 << 40)
    let low = try #require(allocator.allocate(size: 4096, limit: IOVA(Self.fourGiB)))
    #expect(low.rawValue == Self.fourGiB - 4096)
    let high = try #require(allocator.allocate(size: 4096, limit: IOVA(1 << 40)))
    #expect(high.rawValue == (1 << 40) - 4096)
  }

  @Test(arguments: [UInt64(1), 7, 42, 0xC0FFEE])
  func randomAllocFreeMatchesAReferenceSet(seed: UInt64) throws {
    var rng = SplitMix64(seed: seed)
    let start: UInt64 = 3 * 4096
    let end: UInt64 = 8192 * 4096 - 5 * 4096
    let allocator = try IOVAAllocator(granule: 4096, start: IOVA(start), end: IOVA(end))
    let reserved = IOVA(0x100_0000)..<IOVA(0x101_0000 + 100)
    try allocator.reserve(reserved)
    var live: [UInt64: UInt64] = [:]  // iova → rounded size
    for step in 0..<6000 {
      if live.isEmpty || rng.next() % 100 < 55 {
        let pages: UInt64 = rng.next() % 16 + 1
        let unit: UInt64 = rng.next() % 4 == 0 ? 4096 * 8 : 4096
        let slack: UInt64 = rng.next() % 4096
        let size = pages * unit - slack
        let limit = rng.next() % 3 == 0 ? end : (rng.next() % (end / 4096)) * 4096
        guard let iova = allocator.allocate(size: size, limit: IOVA(limit)) else { continue }
        let rounded = try #require(allocator.allocationSize(for: size))
        let lo = iova.rawValue
        let hi = lo + rounded
        #expect(lo % rounded == 0, "step \(step): misaligned")
        #expect(lo >= start && hi <= end && hi <= limit, "step \(step): out of bounds")
        #expect(
          hi <= reserved.lowerBound.rawValue || lo >= (reserved.upperBound.rawValue + 4095) & ~4095,
          "step \(step): in the reserved range")
        let overlapping = live.contains { other, otherSize in !(hi <= other || other + otherSize <= lo) }
        #expect(!overlapping, "step \(step): overlaps a live block")
        live[lo] = rounded
      } else {
        let keys = Array(live.keys)
        let victim = keys[Int(rng.next() % UInt64(keys.count))]
        try allocator.free(IOVA(victim), size: live[victim]!)
        live[victim] = nil
      }
      if step % 1000 == 999 { allocator.flushCaches() }
    }
    #expect(allocator.liveAllocations == live.count)
    for (iova, size) in live { #expect(allocator.isAllocated(IOVA(iova), size: size)) }
  }
}
