import IOMMU
import Testing

@Suite struct RadixIOPageTableMapTests {
  struct BadMap: Sendable, CustomTestStringConvertible {
    var iova: UInt64
    var physical: UInt64
    var size: UInt64
    var protection: IOProtection = .readWrite
    var errno: Errno
    var testDescription: String {
      "map 0x\(String(iova, radix: 16)) -> 0x\(String(physical, radix: 16)) size 0x\(String(size, radix: 16)) \(protection): \(errno)"
    }
  }

  static let badMaps: [BadMap] = [
    BadMap(iova: 0x1800, physical: 0x2000, size: 0x1000, errno: .EINVAL),
    BadMap(iova: 0x1000, physical: 0x2800, size: 0x1000, errno: .EINVAL),
    BadMap(iova: 0x1000, physical: 0x2000, size: 0x1800, errno: .EINVAL),
    BadMap(iova: 0x1000, physical: 0x2000, size: 0x1000, protection: [], errno: .EINVAL),
    BadMap(iova: 0x1000, physical: 0x2000, size: 0x1000, protection: .shared, errno: .EINVAL),
    BadMap(
      iova: 0x1000, physical: 0x2000, size: 0x1000, protection: IOProtection(rawValue: 0x9), errno: .EINVAL),
    // Alignment is checked before range: a misaligned out-of-range map is EINVAL.
    BadMap(iova: (1 << 48) + 0x800, physical: 0, size: 0x1000, errno: .EINVAL),
    BadMap(iova: 1 << 48, physical: 0, size: 0x1000, errno: .ERANGE),
    BadMap(iova: (1 << 48) - 0x1000, physical: 0, size: 0x2000, errno: .ERANGE),
    BadMap(iova: 0xFFFF_FFFF_FFFF_F000, physical: 0, size: 0x2000, errno: .ERANGE),
    BadMap(iova: 0, physical: (1 << 52) - 0x1000, size: 0x2000, errno: .ERANGE),
    BadMap(iova: 0, physical: 0xFFFF_FFFF_FFFF_F000, size: 0x1000, errno: .ERANGE),
  ]

  @Test(arguments: badMaps)
  func badMapsAreRefusedWithTheirErrnoAndChangeNothing(_ bad: BadMap) throws {
    for table in [try makeTable().1, try ReferenceIOPageTable()] as [any IOPageTableProtocol] {
      let errno = thrownErrno {
        try table.map(
          IOVA(bad.iova), to: PhysicalAddress(bad.physical), size: bad.size, protection: bad.protection)
      }
      #expect(errno == bad.errno)
      #expect(table.mappedBytes == 0)
    }
    let (pool, table) = try makeTable()
    _ = thrownErrno {
      try table.map(
        IOVA(bad.iova), to: PhysicalAddress(bad.physical), size: bad.size, protection: bad.protection)
    }
    #expect(pool.allocatedPages == 1)
    #expect(memoryDump(pool) == [table.root: Array(repeating: 0, count: 512)])
  }

  @Test func edgesOfTheAddressSpacesAreMappable() throws {
    let (_, table) = try makeTable()
    try table.map(
      IOVA((1 << 48) - 0x1000), to: PhysicalAddress((1 << 52) - 0x1000), size: 0x1000, protection: .read)
    #expect(table.translate(IOVA((1 << 48) - 1))?.physical == PhysicalAddress((1 << 52) - 1))
    #expect(table.translate(IOVA(1 << 48)) == nil)
  }

  @Test func zeroSizeMapsNothing() throws {
    let (pool, table) = try makeTable()
    try table.map(IOVA(1 << 48), to: PhysicalAddress(0), size: 0, protection: .read)
    #expect(table.mappedBytes == 0)
    #expect(pool.allocatedPages == 1)
  }

  @Test func overlapIsEEXISTAndLeavesTheTableUntouched() throws {
    let (pool, table) = try makeTable()
    try table.map(IOVA(0x20_0000), to: PhysicalAddress(0x4000_0000), size: 0x20_0000, protection: .read)
    try table.map(IOVA(0x4000_0000), to: PhysicalAddress(0x1000), size: 0x1000, protection: .write)
    let before = memoryDump(pool)
    let mappingsBefore = table.mappings()
    let overlapping: [(UInt64, UInt64)] = [
      (0x30_0000, 0x1000),  // inside the 2 MiB leaf
      (0x0, 0x40_0000),  // first half free, then the 2 MiB leaf: nothing of the free half is written
      (0x1F_F000, 0x2000),  // straddles the leaf's start
      (0x3F_F000, 0x2000),  // straddles its end
      (0x0, 0x8000_0000),  // a 1 GiB-aligned 2 GiB range over both
      (0x3FFF_F000, 0x2000),  // reaches the 4 KiB leaf
    ]
    for (iova, size) in overlapping {
      #expect(
        thrownErrno { try table.map(IOVA(iova), to: PhysicalAddress(0), size: size, protection: .readWrite) }
          == .EEXIST)
      #expect(memoryDump(pool) == before)
      #expect(table.mappings() == mappingsBefore)
      #expect(table.mappedBytes == 0x20_1000)
    }
    // Right next to both is free.
    try table.map(IOVA(0x40_0000), to: PhysicalAddress(0), size: 0x1000, protection: .read)
    try table.map(IOVA(0x3FFF_F000), to: PhysicalAddress(0), size: 0x1000, protection: .read)
  }

  /// Table memory for only part of a map: the written leaves and the new tables go again, the
  /// table and the pool are exactly as before, and the same map succeeds once memory is there.
  @Test func exhaustedTableMemoryRollsBackExactly() throws {
    let (pool, table) = try makeTable(maxPages: 6)
    // Root, a level-3 table, a level-2 table for 1 GiB..2 GiB and one level-1 table: 4 pages.
    try table.map(IOVA(0x4000_0000), to: PhysicalAddress(0x9000), size: 0x1000, protection: .read)
    #expect(pool.allocatedPages == 4)
    let before = memoryDump(pool)
    // 4 MiB at a physical address that is not 2 MiB aligned: 1024 4 KiB leaves over two level-1 tables
    // under a new level-2 table — three pages where two are left. It fails after 512 leaves.
    let errno = thrownErrno {
      try table.map(IOVA(0), to: PhysicalAddress(0x10_1000), size: 0x40_0000, protection: .readWrite)
    }
    #expect(errno == .ENOMEM)
    #expect(memoryDump(pool) == before)
    #expect(pool.allocatedPages == 4)
    #expect(table.tablePages == 4)
    #expect(table.mappedBytes == 0x1000)
    #expect(table.translate(IOVA(0)) == nil)
    #expect(table.translate(IOVA(0x4000_0000))?.physical == PhysicalAddress(0x9000))

    // The first allocation already fails: nothing at all was written.
    let (tinyPool, tinyTable) = try makeTable(maxPages: 3)
    #expect(
      thrownErrno { try tinyTable.map(IOVA(0), to: PhysicalAddress(0), size: 0x1000, protection: .read) }
        == .ENOMEM)
    #expect(tinyPool.allocatedPages == 1)
    #expect(memoryDump(tinyPool) == [tinyTable.root: Array(repeating: 0, count: 512)])

    // With the 2 MiB-aligned physical address it needs one new table only, and fits.
    try table.map(IOVA(0), to: PhysicalAddress(0x20_0000), size: 0x40_0000, protection: .readWrite)
    #expect(table.mappings().map(\.pageSize) == [.size2M, .size2M, .size4K])
    #expect(pool.allocatedPages == 5)
  }

  @Test func rootAllocationFailureIsENOMEM() throws {
    let pool = try TablePagePool(maxPages: 0)
    #expect(thrownErrno { _ = try RadixIOPageTable(memory: pool) } == .ENOMEM)
    #expect(thrownErrno { _ = try RadixIOPageTable(memory: pool, inputAddressBits: 40) } == .EINVAL)
    #expect(thrownErrno { _ = try ReferenceIOPageTable(inputAddressBits: 40) } == .EINVAL)
  }

  @Test func twoMiBAlignedFourMiBUsesTwoLargeLeaves() throws {
    let (pool, table) = try makeTable()
    try table.map(IOVA(0x20_0000), to: PhysicalAddress(0x4000_0000), size: 0x40_0000, protection: .read)
    #expect(
      table.mappings() == [
        IOLeafMapping(
          iova: IOVA(0x20_0000), physical: PhysicalAddress(0x4000_0000), pageSize: .size2M, protection: .read),
        IOLeafMapping(
          iova: IOVA(0x40_0000), physical: PhysicalAddress(0x4020_0000), pageSize: .size2M, protection: .read),
      ])
    #expect(table.tablePages == 3)  // no level-1 table
    #expect(pool.allocatedPages == 3)
  }

  @Test func misalignedPhysicalForcesFourKiBLeaves() throws {
    let (_, table) = try makeTable()
    try table.map(IOVA(0x20_0000), to: PhysicalAddress(0x4000_1000), size: 0x40_0000, protection: .read)
    let leaves = table.mappings()
    #expect(leaves.count == 1024)
    #expect(leaves.allSatisfy { $0.pageSize == .size4K })
    #expect(table.tablePages == 5)  // two level-1 tables
    #expect(table.translate(IOVA(0x5F_FFFF))?.physical == PhysicalAddress(0x4040_0FFF))
  }

  /// iommu_pgsize picks per step: 4 KiB up to 2 MiB alignment, 2 MiB up to 1 GiB alignment, 1 GiB, then
  /// down again as the remaining size shrinks.
  @Test func pageSizesGrowAndShrinkAlongARange() throws {
    let (_, table) = try makeTable()
    let start: UInt64 = 0x3FDF_F000
    let size: UInt64 = 0x1000 + 0x20_0000 + 0x4000_0000 + 0x20_0000 + 0x1000
    try table.map(IOVA(start), to: PhysicalAddress(start), size: size, protection: .readWrite)
    let leaves = table.mappings()
    #expect(leaves.map(\.pageSize) == [.size4K, .size2M, .size1G, .size2M, .size4K])
    #expect(leaves.map(\.iova.rawValue) == [0x3FDF_F000, 0x3FE0_0000, 0x4000_0000, 0x8000_0000, 0x8020_0000])
    #expect(leaves.allSatisfy { $0.iova.rawValue == $0.physical.rawValue })
    #expect(table.mappedBytes == size)
    let reference = try ReferenceIOPageTable()
    try reference.map(IOVA(start), to: PhysicalAddress(start), size: size, protection: .readWrite)
    #expect(reference.mappings() == leaves)
  }

  @Test func deinitReturnsEveryTablePage() throws {
    let pool = try TablePagePool(maxPages: 64)
    do {
      let table = try RadixIOPageTable(memory: pool)
      try table.map(IOVA(0), to: PhysicalAddress(0x1000), size: 0x1000, protection: .read)
      try table.map(IOVA(0x7F_0000_0000), to: PhysicalAddress(0), size: 0x40_0000, protection: .read)
      try table.map(IOVA(0x80_4000_0000), to: PhysicalAddress(0), size: 0x4000_0000, protection: .read)
      #expect(pool.allocatedPages == table.tablePages)
      #expect(pool.allocatedPages > 5)
    }
    #expect(pool.allocatedPages == 0)
  }
}
