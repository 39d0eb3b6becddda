import IOMMU
import Testing

/// unmap's contract, on the radix table and the reference alike.
@Suite struct RadixIOPageTableUnmapTests {
  /// Both implementations, each with a fresh table; the pool is nil for the reference.
  static func bothTables() throws -> [(TablePagePool?, any IOPageTableProtocol)] {
    let (pool, table) = try makeTable()
    return [(pool, table), (nil, try ReferenceIOPageTable())]
  }

  @Test func unmappingAHoleReturnsZero() throws {
    for (_, table) in try Self.bothTables() {
      #expect(try table.unmap(IOVA(0x1000), size: 0x1000) == 0)
      try table.map(IOVA(0x10_0000), to: PhysicalAddress(0), size: 0x1000, protection: .read)
      #expect(try table.unmap(IOVA(0xF_F000), size: 0x2000) == 0)  // starts in a hole
      #expect(table.mappedBytes == 0x1000)
    }
  }

  @Test func unmapStopsAtTheFirstHole() throws {
    for (_, table) in try Self.bothTables() {
      try table.map(IOVA(0x10000), to: PhysicalAddress(0x80000), size: 0x3000, protection: .read)  // A
      // B, after a one-page hole.
      try table.map(IOVA(0x14000), to: PhysicalAddress(0x90000), size: 0x2000, protection: .read)
      #expect(try table.unmap(IOVA(0x10000), size: 0x10000) == 0x3000)
      #expect(table.translate(IOVA(0x10000)) == nil)
      #expect(table.translate(IOVA(0x12000)) == nil)
      #expect(table.translate(IOVA(0x14000))?.physical == PhysicalAddress(0x90000))
      #expect(table.mappedBytes == 0x2000)
      #expect(try table.unmap(IOVA(0x14000), size: 0x10000) == 0x2000)
      #expect(table.mappedBytes == 0)
    }
  }

  @Test func unmapAcrossLeavesOfEverySize() throws {
    for (_, table) in try Self.bothTables() {
      let start: UInt64 = 0x3FDF_F000
      let size: UInt64 = 0x1000 + 0x20_0000 + 0x4000_0000 + 0x20_0000 + 0x1000
      try table.map(IOVA(start), to: PhysicalAddress(start), size: size, protection: .read)
      #expect(try table.unmap(IOVA(start), size: 0x1000 + 0x20_0000) == 0x20_1000)
      #expect(try table.unmap(IOVA(0x4000_0000), size: size) == 0x4020_1000)
      #expect(table.mappedBytes == 0)
    }
  }

  @Test func unmapThatWouldSplitALargeLeafIsEINVALAndUnmapsNothing() throws {
    for (_, table) in try Self.bothTables() {
      try table.map(IOVA(0x20_0000), to: PhysicalAddress(0x4000_0000), size: 0x20_0000, protection: .read)
      try table.map(IOVA(0x1F_F000), to: PhysicalAddress(0x5000), size: 0x1000, protection: .read)
      let splitting: [(UInt64, UInt64)] = [
        (0x20_0000, 0x1000),  // end inside the leaf
        (0x30_0000, 0x10_0000),  // start inside the leaf
        (0x1F_F000, 0x2000),  // a 4 KiB leaf wholly inside, then the 2 MiB leaf's first page
        (0x10_0000, 0x20_0000),  // starts in a hole, ends inside the leaf
      ]
      for (iova, size) in splitting {
        #expect(thrownErrno { _ = try table.unmap(IOVA(iova), size: size) } == .EINVAL)
        #expect(table.mappedBytes == 0x20_1000)
        #expect(table.translate(IOVA(0x3F_FFFF))?.physical == PhysicalAddress(0x401F_FFFF))
        #expect(table.translate(IOVA(0x1F_F000)) != nil)
      }
      #expect(try table.unmap(IOVA(0x1F_F000), size: 0x20_1000) == 0x20_1000)
    }
  }

  @Test func badArgumentsAreRefused() throws {
    for (_, table) in try Self.bothTables() {
      #expect(thrownErrno { _ = try table.unmap(IOVA(0x800), size: 0x1000) } == .EINVAL)
      #expect(thrownErrno { _ = try table.unmap(IOVA(0x1000), size: 0x800) } == .EINVAL)
      #expect(thrownErrno { _ = try table.unmap(IOVA(1 << 48), size: 0x1000) } == .ERANGE)
      #expect(thrownErrno { _ = try table.unmap(IOVA(0xFFFF_FFFF_FFFF_F000), size: 0x2000) } == .ERANGE)
      #expect(try table.unmap(IOVA(1 << 48), size: 0) == 0)
    }
  }

  /// Linux's VT-d rule: a table page goes back to the pool only when an unmap covers its whole span;
  /// a table emptied by smaller unmaps stays linked for the next map.
  @Test func tablesReturnToThePoolOnlyWhenAnUnmapCoversTheirSpan() throws {
    let (pool, table) = try makeTable()
    try table.map(IOVA(0), to: PhysicalAddress(0x1000), size: 0x3000, protection: .read)
    // Two pages either side of the boundary between level-4 entries 0 and 1.
    try table.map(IOVA(0x7F_FFFF_F000), to: PhysicalAddress(0), size: 0x2000, protection: .read)
    try table.map(IOVA(0xFFFF_C000_0000), to: PhysicalAddress(0), size: 0x4000_0000, protection: .read)
    try table.map(IOVA(0x1234_5620_0000), to: PhysicalAddress(0x1000), size: 0x40_0000, protection: .read)
    #expect(table.tablePages == pool.allocatedPages)
    // Root; 3 for the low pages; 2 + 3 for the pair across level-4 entries 0 and 1; 1 for the 1 GiB
    // leaf; 2 + 2 for the 4 MiB of 4 KiB leaves.
    #expect(table.tablePages == 1 + 3 + 5 + 1 + 4)

    // Page-sized unmaps never cover a table's span: every table stays, even when left empty.
    #expect(try table.unmap(IOVA(0x1000), size: 0x1000) == 0x1000)
    #expect(try table.unmap(IOVA(0x7F_FFFF_F000), size: 0x2000) == 0x2000)
    #expect(try table.unmap(IOVA(0), size: 0x1000) == 0x1000)
    #expect(try table.unmap(IOVA(0x2000), size: 0x1000) == 0x1000)
    #expect(table.tablePages == 14)
    #expect(table.translate(IOVA(0x2000)) == nil)
    // The 1 GiB leaf sits directly in a level-3 table whose span (512 GiB) the unmap does not cover.
    #expect(try table.unmap(IOVA(0xFFFF_C000_0000), size: 0x4000_0000) == 0x4000_0000)
    #expect(table.tablePages == 14)
    // 4 MiB of 4 KiB leaves fill two level-1 tables exactly: unmapping the 4 MiB covers both spans.
    #expect(try table.unmap(IOVA(0x1234_5620_0000), size: 0x40_0000) == 0x40_0000)
    #expect(table.tablePages == 12)
    #expect(pool.allocatedPages == 12)
    #expect(table.mappedBytes == 0)
    // A later map reuses the tables that stayed: no new page for the same 4 KiB.
    try table.map(IOVA(0x1000), to: PhysicalAddress(0x1000), size: 0x1000, protection: .read)
    #expect(table.tablePages == 12)
  }

  /// The one-walk 4 KiB paths (what every dma_map_page/dma_unmap_page of a page takes).
  @Test func singlePageMapAndUnmapKeepTheContract() throws {
    let (pool, table) = try makeTable()
    try table.map(IOVA(0x20_0000), to: PhysicalAddress(0x4000_0000), size: 0x20_0000, protection: .read)
    // A 4 KiB page under a 2 MiB leaf: EEXIST on map, EINVAL (would split) on unmap, nothing changes.
    #expect(
      thrownErrno { try table.map(IOVA(0x20_1000), to: PhysicalAddress(0), size: 0x1000, protection: .read) }
        == .EEXIST)
    #expect(thrownErrno { _ = try table.unmap(IOVA(0x20_1000), size: 0x1000) } == .EINVAL)
    #expect(table.mappedBytes == 0x20_0000)
    // A page next to another in the same level-1 table: unmapping one keeps the table.
    try table.map(IOVA(0x1000), to: PhysicalAddress(0x9000), size: 0x1000, protection: .readWrite)
    try table.map(IOVA(0x2000), to: PhysicalAddress(0xA000), size: 0x1000, protection: .read)
    #expect(
      thrownErrno { try table.map(IOVA(0x2000), to: PhysicalAddress(0), size: 0x1000, protection: .read) }
        == .EEXIST)
    let pagesWithBoth = table.tablePages
    #expect(try table.unmap(IOVA(0x1000), size: 0x1000) == 0x1000)
    #expect(try table.unmap(IOVA(0x1000), size: 0x1000) == 0)
    #expect(table.tablePages == pagesWithBoth)
    #expect(table.translate(IOVA(0x2000))?.physical == PhysicalAddress(0xA000))
    // The last page of its level-1 table leaves the table linked (a page never covers its span).
    #expect(try table.unmap(IOVA(0x2000), size: 0x1000) == 0x1000)
    #expect(table.tablePages == pagesWithBoth)
    #expect(pool.allocatedPages == table.tablePages)
    // Unmapping the 2 MiB leaf clears a level-2 entry; its table (1 GiB span) stays too.
    _ = try table.unmap(IOVA(0x20_0000), size: 0x20_0000)
    #expect(table.tablePages == pagesWithBoth)
    #expect(table.mappedBytes == 0)
  }

  @Test func singlePageMapOutOfTableMemoryLeavesNoTableBehind() throws {
    let (pool, table) = try makeTable(maxPages: 3)  // the root and two more: one short of a 4 KiB leaf
    #expect(
      thrownErrno { try table.map(IOVA(0x1000), to: PhysicalAddress(0), size: 0x1000, protection: .read) }
        == .ENOMEM)
    #expect(table.tablePages == 1)
    #expect(pool.allocatedPages == 1)
    #expect(table.mappedBytes == 0)
  }
}
