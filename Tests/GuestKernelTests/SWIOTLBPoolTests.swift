import GuestKernel
import Testing

@Suite struct SWIOTLBPoolTests {
  static let base: UInt64 = 0x1_0000_0000
  static let segment = SWIOTLBPool.maxMappingSize

  /// The address of slot `index` of a pool at `base`.
  static func slot(_ index: Int) -> UInt64 { base + UInt64(index * SWIOTLBPool.slotSize) }

  func expectError(_ code: SWIOTLBError.Code, _ body: () throws(SWIOTLBError) -> Void) {
    do {
      try body()
      Issue.record("expected \(code), nothing was thrown")
    } catch {
      #expect(error.code == code, "\(error)")
    }
  }

  @Test func layoutConstantsAreLinuxs() throws {
    #expect(SWIOTLBPool.slotSize == 1 << 11)
    #expect(SWIOTLBPool.segmentSlots == 128)
    #expect(SWIOTLBPool.maxMappingSize == SWIOTLBPool.slotSize * SWIOTLBPool.segmentSlots)
    let pool = try SWIOTLBPool(base: Self.base, bytes: 4 * Self.segment)
    #expect(pool.base == Self.base)
    #expect(pool.slotCount == 512)
    #expect(pool.bytes == 1 << 20)
    #expect(pool.usedSlots == 0 && pool.highWaterSlots == 0)
  }

  @Test(arguments: [0, -262_144, 100, 262_144 + 2048, 131_072])
  func poolSizeMustBeWholeSegments(bytes: Int) {
    expectError(.invalidSize) { () throws(SWIOTLBError) in _ = try SWIOTLBPool(base: Self.base, bytes: bytes)
    }
  }

  @Test func poolMayNotWrapTheAddressSpace() throws {
    let top = UInt64.max - 0xFFF
    expectError(.invalidSize) { () throws(SWIOTLBError) in _ = try SWIOTLBPool(base: top, bytes: Self.segment)
    }
    let high: UInt64 = 0xFFFF_FFFF_FFF0_0000
    let pool = try SWIOTLBPool(base: high, bytes: Self.segment)
    #expect(pool.contains(high + UInt64(Self.segment) - 1))
    #expect(!pool.contains(UInt64.max))
  }

  @Test func containsIsExactlyThePool() throws {
    let pool = try SWIOTLBPool(base: Self.base, bytes: 2 * Self.segment)
    #expect(pool.contains(Self.base))
    #expect(pool.contains(Self.base + UInt64(2 * Self.segment) - 1))
    #expect(!pool.contains(Self.base - 1))
    #expect(!pool.contains(Self.base + UInt64(2 * Self.segment)))
    #expect(!pool.contains(0))
  }

  /// Exact addresses: sub-page requests take the next slot, page-sized ones the next even slot, and
  /// the search continues after the last allocation rather than reusing freed slots behind it.
  @Test func pageAlignmentAndNextFitGiveExactAddresses() throws {
    let pool = try SWIOTLBPool(base: Self.base, bytes: 2 * Self.segment)
    #expect(try pool.allocate(size: 100) == Self.slot(0))  // 1 slot; next search at 1
    #expect(try pool.allocate(size: 4096) == Self.slot(2))  // page: 1 rounds up to 2
    #expect(try pool.allocate(size: 2049) == Self.slot(4))  // 2 slots, sub-page
    #expect(try pool.allocate(size: 1) == Self.slot(6))  // next search at 7
    #expect(try pool.allocate(size: 8192) == Self.slot(8))  // page: 7 rounds up to 8; 4 slots
    #expect(try pool.allocate(size: 2048) == Self.slot(12))
    #expect(pool.usedSlots == 11 && pool.highWaterSlots == 11)
    // Slots 1, 3 and 7 are free gaps; freeing 0 and 6 makes more, but next-fit moves on.
    try pool.free(Self.slot(6), size: 1)
    try pool.free(Self.slot(0), size: 100)
    #expect(pool.usedSlots == 9)
    #expect(try pool.allocate(size: 1) == Self.slot(13))
    #expect(try pool.allocate(size: 3000) == Self.slot(14))  // 2 slots, sub-page, no alignment
    #expect(try pool.allocate(size: 4096) == Self.slot(16))
    #expect(pool.usedSlots == 14 && pool.highWaterSlots == 14)
    #expect(pool.statistics == .init(allocations: 9, frees: 2, failures: 0))
  }

  /// A run never crosses a 128-slot segment: with two slots left before the boundary, a three-slot
  /// request goes to the next segment although the slots on both sides of the boundary are free.
  @Test func aRunNeverCrossesASegmentBoundary() throws {
    let pool = try SWIOTLBPool(base: Self.base, bytes: 2 * Self.segment)
    #expect(try pool.allocate(size: 126 * 2048) == Self.slot(0))  // slots 0...125; next search at 126
    #expect(try pool.allocate(size: 3 * 2048) == Self.slot(128))  // 126, 127 are too few
    #expect(pool.usedSlots == 129)
    // The search goes on after the last run; the two slots before the boundary stay free.
    #expect(try pool.allocate(size: 4000) == Self.slot(131))
    // A two-slot request does fit there.
    let second = try SWIOTLBPool(base: Self.base, bytes: 2 * Self.segment)
    _ = try second.allocate(size: 126 * 2048)
    #expect(try second.allocate(size: 4000) == Self.slot(126))
    #expect(try second.allocate(size: 1) == Self.slot(128))
  }

  @Test func aWholeSegmentIsTheLargestMapping() throws {
    let pool = try SWIOTLBPool(base: Self.base, bytes: 2 * Self.segment)
    expectError(.tooLarge) { () throws(SWIOTLBError) in _ = try pool.allocate(size: Self.segment + 1) }
    #expect(try pool.allocate(size: Self.segment) == Self.slot(0))
    // The second segment is still whole; a one-slot request elsewhere would split it.
    #expect(try pool.allocate(size: Self.segment) == Self.slot(128))
    #expect(pool.usedSlots == 256)
  }

  @Test(arguments: [0, -1, Int.min])
  func nonPositiveSizesAreInvalid(size: Int) throws {
    let pool = try SWIOTLBPool(base: Self.base, bytes: Self.segment)
    expectError(.invalidSize) { () throws(SWIOTLBError) in _ = try pool.allocate(size: size) }
    expectError(.invalidSize) { () throws(SWIOTLBError) in try pool.free(Self.base, size: size) }
    #expect(pool.statistics.failures == 1 && pool.usedSlots == 0)
  }

  @Test func fullUntilSomethingIsFreedThenTheSearchWraps() throws {
    let pool = try SWIOTLBPool(base: Self.base, bytes: Self.segment)
    let quarter = 64 * 1024
    for index in 0..<4 {
      #expect(try pool.allocate(size: quarter) == Self.slot(index * 32))
    }
    #expect(pool.usedSlots == 128)
    expectError(.full) { () throws(SWIOTLBError) in _ = try pool.allocate(size: 1) }
    try pool.free(Self.slot(32), size: quarter)
    // The next search starts past the end, wraps to 0 and finds the freed quarter.
    #expect(try pool.allocate(size: quarter) == Self.slot(32))
    #expect(pool.statistics == .init(allocations: 5, frees: 1, failures: 1))
    #expect(pool.highWaterSlots == 128)
  }

  @Test func fullWhenFragmentedEvenWithEnoughFreeSlots() throws {
    let pool = try SWIOTLBPool(base: Self.base, bytes: Self.segment)
    for index in 0..<64 {
      #expect(try pool.allocate(size: 4096) == Self.slot(index * 2))
    }
    for index in stride(from: 0, to: 64, by: 2) {
      try pool.free(Self.slot(index * 2), size: 4096)
    }
    #expect(pool.usedSlots == 64)
    expectError(.full) { () throws(SWIOTLBError) in _ = try pool.allocate(size: 8192) }
    // Freeing a neighbour merges two holes into a four-slot run at slot 0.
    try pool.free(Self.slot(2), size: 4096)
    #expect(try pool.allocate(size: 8192) == Self.slot(0))
  }

  @Test func doubleAndWrongSizeFreesAreRefusedAndFreeNothing() throws {
    let pool = try SWIOTLBPool(base: Self.base, bytes: Self.segment)
    let first = try pool.allocate(size: 4096)  // slots 0, 1
    let second = try pool.allocate(size: 2048)  // slot 2
    #expect(pool.usedSlots == 3)
    expectError(.notAllocated) { () throws(SWIOTLBError) in try pool.free(first, size: 2048) }
    expectError(.notAllocated) { () throws(SWIOTLBError) in try pool.free(first, size: 8192) }
    expectError(.notAllocated) { () throws(SWIOTLBError) in try pool.free(first, size: Self.segment + 1) }
    expectError(.notAllocated) { () throws(SWIOTLBError) in try pool.free(first + 2048, size: 2048) }
    expectError(.notAllocated) { () throws(SWIOTLBError) in try pool.free(first + 1, size: 4096) }
    expectError(.notAllocated) { () throws(SWIOTLBError) in try pool.free(Self.base - 4096, size: 4096) }
    #expect(pool.usedSlots == 3 && pool.statistics.frees == 0)
    // The slot count is what is recorded: 3000 bytes is also two slots.
    try pool.free(first, size: 3000)
    expectError(.notAllocated) { () throws(SWIOTLBError) in try pool.free(first, size: 4096) }
    #expect(pool.usedSlots == 1)
    try pool.free(second, size: 2048)
    expectError(.notAllocated) { () throws(SWIOTLBError) in try pool.free(second, size: 2048) }
    #expect(pool.usedSlots == 0 && pool.highWaterSlots == 3)
    #expect(pool.statistics == .init(allocations: 2, frees: 2, failures: 0))
  }

  /// Random allocations and frees against a plain model: runs never overlap, never cross a segment,
  /// page-sized ones are page aligned, and the pool refuses only when the model has no room.
  @Test func randomTrafficKeepsTheInvariants() throws {
    let pool = try SWIOTLBPool(base: Self.base, bytes: 4 * Self.segment)
    var used = [Bool](repeating: false, count: pool.slotCount)
    var live: [(address: UInt64, size: Int)] = []
    var random = Random(seed: 0x5EED)
    for _ in 0..<5000 {
      if !live.isEmpty && random.next() % 2 == 0 {
        let victim = live.remove(at: Int(random.next() % UInt64(live.count)))
        try pool.free(victim.address, size: victim.size)
        let first = Int((victim.address - Self.base) / 2048)
        for slot in first..<first + (victim.size + 2047) / 2048 { used[slot] = false }
        continue
      }
      let size = random.next() % 4 == 0 ? Int(random.next() % 65536) + 1 : Int(random.next() % 6000) + 1
      let slots = (size + 2047) / 2048
      let step = size >= 4096 ? 2 : 1
      let modelHasRoom = stride(from: 0, to: pool.slotCount, by: step).contains { start in
        start % 128 + slots <= 128 && !used[start..<start + slots].contains(true)
      }
      // #require, so that a broken invariant stops the run at its first occurrence.
      switch Result(catching: { () throws(SWIOTLBError) in try pool.allocate(size: size) }) {
      case .success(let address):
        let first = Int((address - Self.base) / 2048)
        try #require(first % 128 + slots <= 128)
        try #require(size < 4096 || address % 4096 == 0)
        try #require(!used[first..<first + slots].contains(true))
        for slot in first..<first + slots { used[slot] = true }
        live.append((address, size))
      case .failure(let error):
        try #require(error.code == .full)
        try #require(!modelHasRoom)
      }
      try #require(pool.usedSlots == used.filter { $0 }.count)
    }
  }

  /// SplitMix64, so the random test is the same on every run.
  struct Random {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
      state &+= 0x9E37_79B9_7F4A_7C15
      var mixed = state
      mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
      mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
      return mixed ^ (mixed >> 31)
    }
  }
}
