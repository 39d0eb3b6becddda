import IOMMU
import Testing

/// The bits a map writes, read back through the table memory, against values derived by hand from the
/// format (RadixPageTableEntry): tables are allocated in order from 0x1_0000_0000, a non-leaf entry is
/// table | R | W (0x3), a leaf is frame | PS (0x80, 2 MiB and 1 GiB) | S (0x800) | W (0x2) | R (0x1).
@Suite struct RadixIOPageTableFormatTests {
  /// IOVA 0x80_8060_4000: level-4 index 1, level-3 index 2, level-2 index 3, level-1 index 4.
  @Test func fourKiBLeafBits() throws {
    let (pool, table) = try makeTable()
    try table.map(
      IOVA(0x80_8060_4000), to: PhysicalAddress(0xA_BCDE_F000), size: 0x1000, protection: .readWrite)
    #expect(pool.loadEntry(PhysicalAddress(0x1_0000_0008)) == 0x1_0000_1003)  // root[1] → level-3 table
    #expect(pool.loadEntry(PhysicalAddress(0x1_0000_1010)) == 0x1_0000_2003)  // level 3 [2] → level-2 table
    #expect(pool.loadEntry(PhysicalAddress(0x1_0000_2018)) == 0x1_0000_3003)  // level 2 [3] → level-1 table
    #expect(pool.loadEntry(PhysicalAddress(0x1_0000_3020)) == 0xA_BCDE_F003)  // level 1 [4]: the 4 KiB leaf
    #expect(table.tablePages == 4)
    #expect(pool.allocatedPages == 4)
    #expect(
      table.translate(IOVA(0x80_8060_4ABC))
        == IOTranslation(physical: PhysicalAddress(0xA_BCDE_FABC), protection: .readWrite, pageSize: .size4K))
    #expect(table.translate(IOVA(0x80_8060_5000)) == nil)
  }

  /// IOVA 0x80_80A0_0000: level-4 index 1, level-3 index 2, level-2 index 5.
  @Test func twoMiBLeafBitsWithSharedReadOnly() throws {
    let (pool, table) = try makeTable()
    try table.map(
      IOVA(0x80_80A0_0000), to: PhysicalAddress(0x2_0060_0000), size: 0x20_0000, protection: [.read, .shared])
    #expect(pool.loadEntry(PhysicalAddress(0x1_0000_0008)) == 0x1_0000_1003)
    #expect(pool.loadEntry(PhysicalAddress(0x1_0000_1010)) == 0x1_0000_2003)
    #expect(pool.loadEntry(PhysicalAddress(0x1_0000_2028)) == 0x2_0060_0881)  // frame | S | PS | R
    #expect(table.tablePages == 3)
    #expect(
      table.translate(IOVA(0x80_80A1_2345))
        == IOTranslation(
          physical: PhysicalAddress(0x2_0061_2345), protection: [.read, .shared], pageSize: .size2M))
  }

  /// IOVA 0x81_C000_0000: level-4 index 1, level-3 index 7.
  @Test func oneGiBLeafBitsWriteOnly() throws {
    let (pool, table) = try makeTable()
    try table.map(
      IOVA(0x81_C000_0000), to: PhysicalAddress(0x40_0000_0000), size: 0x4000_0000, protection: .write)
    #expect(pool.loadEntry(PhysicalAddress(0x1_0000_0008)) == 0x1_0000_1003)
    #expect(pool.loadEntry(PhysicalAddress(0x1_0000_1038)) == 0x40_0000_0082)  // frame | PS | W
    #expect(table.tablePages == 2)
    #expect(
      table.translate(IOVA(0x81_FFFF_FFF8))
        == IOTranslation(physical: PhysicalAddress(0x40_3FFF_FFF8), protection: .write, pageSize: .size1G))
  }

  /// The public builders produce what `map` writes, so a guest IOMMU driver can build Cove tables itself.
  @Test func entryBuildersMatchTheFormat() {
    #expect(RadixPageTableEntry.table(PhysicalAddress(0x1_0000_3000)).rawValue == 0x1_0000_3003)
    #expect(
      RadixPageTableEntry.leaf(PhysicalAddress(0xA_BCDE_F000), pageSize: .size4K, protection: .readWrite)
        .rawValue
        == 0xA_BCDE_F003)
    #expect(
      RadixPageTableEntry.leaf(
        PhysicalAddress(0x2_0060_0000), pageSize: .size2M, protection: [.read, .shared]
      )
      .rawValue == 0x2_0060_0881)
    #expect(
      RadixPageTableEntry.leaf(PhysicalAddress(0x40_0000_0000), pageSize: .size1G, protection: .write)
        .rawValue
        == 0x40_0000_0082)
    let entry = RadixPageTableEntry(rawValue: 0x2_0060_0881)
    #expect(entry.isPresent && entry.isLeaf(atLevel: 2) && !entry.isLeaf(atLevel: 4))
    #expect(!entry.hasReservedBits(atLevel: 2))
    #expect(entry.hasReservedBits(atLevel: 1))  // PS is reserved at level 1
    #expect(entry.address == PhysicalAddress(0x2_0060_0000))
    #expect(!RadixPageTableEntry(rawValue: 0x2_0060_0880).isPresent)
  }

  @Test(arguments: [
    IOProtection.read, .write, .readWrite, [.read, .shared], [.write, .shared], [.read, .write, .shared],
  ])
  func protectionAndSharedBitRoundTrip(_ protection: IOProtection) throws {
    let (pool, table) = try makeTable()
    try table.map(IOVA(0x5000), to: PhysicalAddress(0x9000), size: 0x1000, protection: protection)
    #expect(table.translate(IOVA(0x5008))?.protection == protection)
    #expect(table.mappings().map(\.protection) == [protection])
    let leaf = try #require(table.walk(IOVA(0x5000)).steps.last)
    #expect((leaf.entry.rawValue & RadixPageTableEntry.sharedBit != 0) == protection.contains(.shared))
    #expect(leaf.entry.protection == protection)
    #expect(pool.loadEntry(leaf.entryAddress) == leaf.entry.rawValue)
  }

  @Test func walkListsOneStepPerLevelRead() throws {
    let (_, table) = try makeTable()
    try table.map(IOVA(0x80_8060_4000), to: PhysicalAddress(0xA_BCDE_F000), size: 0x1000, protection: .read)
    try table.map(
      IOVA(0x80_80A0_0000), to: PhysicalAddress(0x2_0060_0000), size: 0x20_0000, protection: .read)
    try table.map(
      IOVA(0x81_C000_0000), to: PhysicalAddress(0x40_0000_0000), size: 0x4000_0000, protection: .read)

    let small = table.walk(IOVA(0x80_8060_4010))
    #expect(small.steps.map(\.level) == [4, 3, 2, 1])
    #expect(
      small.steps.map(\.entryAddress)
        == [0x1_0000_0008, 0x1_0000_1010, 0x1_0000_2018, 0x1_0000_3020].map { PhysicalAddress($0) })
    #expect(
      small.steps.map(\.entry.rawValue) == [0x1_0000_1003, 0x1_0000_2003, 0x1_0000_3003, 0xA_BCDE_F001])
    #expect(small.translation?.physical == PhysicalAddress(0xA_BCDE_F010))
    #expect(small.fault == nil)

    let medium = table.walk(IOVA(0x80_80A0_0000))
    #expect(medium.steps.map(\.level) == [4, 3, 2])
    #expect(medium.translation?.pageSize == .size2M)

    let large = table.walk(IOVA(0x81_C000_0000))
    #expect(large.steps.map(\.level) == [4, 3])
    #expect(large.translation?.pageSize == .size1G)

    let hole = table.walk(IOVA(0x7000))
    #expect(hole.steps.map(\.level) == [4])
    #expect(hole.fault == .notPresent(level: 4))
    #expect(table.walk(IOVA(0x80_8060_5000)).fault == .notPresent(level: 1))
    #expect(
      table.walk(IOVA(1 << 48))
        == IOPageWalk(iova: IOVA(1 << 48), steps: [], outcome: .faulted(.addressOutOfRange)))
  }

  @Test func staticWalkOverAnyMemoryMatchesTheTablesOwnWalk() throws {
    let (pool, table) = try makeTable()
    try table.map(
      IOVA(0x80_8060_4000), to: PhysicalAddress(0xA_BCDE_F000), size: 0x1000, protection: .readWrite)
    for iova in [0x80_8060_4123, 0x80_8060_5000, 0x0, 0xFFFF_FFFF_F000] as [UInt64] {
      let walk = try RadixIOPageTable.walk(root: table.root, memory: pool, iova: IOVA(iova))
      #expect(walk == table.walk(IOVA(iova)))
    }
    #expect(
      thrownErrno {
        _ = try RadixIOPageTable.walk(root: PhysicalAddress(0x1_0000_0008), memory: pool, iova: IOVA(0))
      } == .EINVAL)
    #expect(
      thrownErrno {
        _ = try RadixIOPageTable.walk(root: table.root, memory: pool, iova: IOVA(0), inputAddressBits: 57)
      } == .EINVAL)
  }

  @Test func threeLevelTableHasRootAtLevelThree() throws {
    let (pool, table) = try makeTable(inputAddressBits: 39)
    #expect(table.levels == 3)
    try table.map(
      IOVA(0x40_0000_0000), to: PhysicalAddress(0x8000_0000), size: 0x4000_0000, protection: .read)
    #expect(pool.loadEntry(PhysicalAddress(0x1_0000_0800)) == 0x8000_0081)  // root[256]: 1 GiB leaf
    try table.map(IOVA(0x1000), to: PhysicalAddress(0x2000), size: 0x1000, protection: .read)
    #expect(table.walk(IOVA(0x1000)).steps.map(\.level) == [3, 2, 1])
    #expect(table.walk(IOVA(0x40_0000_0000)).steps.map(\.level) == [3])
    #expect(
      thrownErrno { try table.map(IOVA(1 << 39), to: PhysicalAddress(0), size: 0x1000, protection: .read) }
        == .ERANGE)
    let walk = try RadixIOPageTable.walk(
      root: table.root, memory: pool, iova: IOVA(0x1000), inputAddressBits: 39)
    #expect(walk.translation?.physical == PhysicalAddress(0x2000))
  }

  /// Tables written by someone else (a guest): reserved bits fault at their level, and R/W of non-leaf
  /// entries restrict everything below them (ANDed, as VT-d second-level walks do).
  @Test func foreignTablesReservedBitsAndNonLeafRights() throws {
    let pool = try TablePagePool(maxPages: 8)
    let root = try #require(pool.allocateTablePage())
    let level3 = try #require(pool.allocateTablePage())
    let level2 = try #require(pool.allocateTablePage())
    let level1 = try #require(pool.allocateTablePage())
    pool.storeEntry(level3.rawValue | 0x1, at: root)  // read-only subtree
    pool.storeEntry(level2.rawValue | 0x3, at: level3)
    pool.storeEntry(level1.rawValue | 0x3, at: level2)
    pool.storeEntry(0x7000 | 0x803, at: level1)
    func walk(_ iova: UInt64) throws -> IOPageWalk {
      try RadixIOPageTable.walk(root: root, memory: pool, iova: IOVA(iova))
    }
    #expect(
      try walk(0x10).translation
        == IOTranslation(physical: PhysicalAddress(0x7010), protection: [.read, .shared], pageSize: .size4K))

    pool.storeEntry(0x7000 | 0x83, at: level1)  // PS at level 1 is reserved
    #expect(try walk(0).fault == .reservedBitsSet(level: 1))
    pool.storeEntry(0x7000 | 0x8, at: level1)  // not present whatever else is set
    #expect(try walk(0).fault == .notPresent(level: 1))
    pool.storeEntry(0x7000 | (1 << 52) | 0x3, at: level1)  // above bit 51
    #expect(try walk(0).fault == .reservedBitsSet(level: 1))
    pool.storeEntry(0x30_1000 | 0x83, at: level2)  // 2 MiB leaf with frame bit 12 set
    #expect(try walk(0).fault == .reservedBitsSet(level: 2))
    pool.storeEntry(0x4000_0000 | 0x83, at: level3)  // a 1 GiB leaf under a read-only root entry
    #expect(
      try walk(0x123).translation
        == IOTranslation(physical: PhysicalAddress(0x4000_0123), protection: .read, pageSize: .size1G))
    pool.storeEntry(level3.rawValue | 0x83, at: root)  // PS at level 4 is reserved
    #expect(try walk(0).fault == .reservedBitsSet(level: 4))
    pool.storeEntry(level3.rawValue | 0x803, at: root)  // S in a non-leaf entry is reserved
    #expect(try walk(0).fault == .reservedBitsSet(level: 4))
  }
}
