import IOMMU
import Testing

/// The walk through a reader that may refuse (the vIOMMU's nested walk of guest tables): a refused
/// read ends the walk with the exact level and entry address, and a reader that never refuses walks
/// exactly as the walk over the same memory.
@Suite struct RadixIOPageTableCheckedReadTests {
  /// A 48-bit table with one 4 KiB leaf at 0x80_8060_5000 and one 2 MiB leaf at 0x4000_0000, and its
  /// table pages top down for the 4 KiB leaf.
  func makeTables() throws -> (TablePagePool, RadixIOPageTable, [PhysicalAddress]) {
    let (pool, table) = try makeTable()
    try table.map(IOVA(0x80_8060_5000), to: PhysicalAddress(0x9000), size: 0x1000, protection: .readWrite)
    try table.map(IOVA(0x4000_0000), to: PhysicalAddress(0x20_0000), size: 0x20_0000, protection: .read)
    let pages = table.walk(IOVA(0x80_8060_5000)).steps.map {
      PhysicalAddress($0.entryAddress.rawValue & ~0xFFF)
    }
    return (pool, table, pages)
  }

  @Test func refusedReadFaultsAtItsLevelAndAddress() throws {
    let (pool, table, pages) = try makeTables()
    #expect(pages.count == 4)
    let iova = IOVA(0x80_8060_5123)
    // Indices of 0x80_8060_5123: level 4 = 1, level 3 = 2, level 2 = 3, level 1 = 5.
    let expectedAddresses = [
      pages[0].advanced(by: 1 * 8), pages[1].advanced(by: 2 * 8), pages[2].advanced(by: 3 * 8),
      pages[3].advanced(by: 5 * 8),
    ]
    #expect(table.walk(iova).steps.map(\.entryAddress) == expectedAddresses)
    for (index, refusedPage) in pages.enumerated() {
      let level = 4 - index
      var reads: [PhysicalAddress] = []
      let walk = try RadixIOPageTable.walk(root: table.root, iova: iova) { address in
        reads.append(address)
        guard address.rawValue & ~0xFFF != refusedPage.rawValue else { return nil }
        return pool.loadEntry(address)
      }
      #expect(walk.fault == .tableReadFailed(level: level, address: expectedAddresses[index]))
      #expect(walk.steps.map(\.level) == Array(stride(from: 4, to: level, by: -1)))
      #expect(reads == Array(expectedAddresses[...index]))
    }
  }

  @Test func refusalAtTheRootOfA39BitTable() throws {
    let (pool, table) = try makeTable(inputAddressBits: 39)
    try table.map(IOVA(0x40_0000_0000), to: PhysicalAddress(0x5000), size: 0x1000, protection: .read)
    let walk = try RadixIOPageTable.walk(root: table.root, iova: IOVA(0x40_0000_0000), inputAddressBits: 39) {
      _ in nil
    }
    #expect(walk.fault == .tableReadFailed(level: 3, address: table.root.advanced(by: 256 * 8)))
    #expect(walk.steps.isEmpty)
    #expect(pool.allocatedPages == 3)
  }

  @Test func readerThatNeverRefusesWalksLikeTheMemoryWalk() throws {
    let (pool, table, _) = try makeTables()
    var generator = SplitMix64(seed: 5)
    let probes =
      [0x80_8060_5000, 0x80_8060_5FFF, 0x80_8060_6000, 0x4000_0000, 0x401F_FFFF, 0x4020_0000, 0]
      + (0..<200).map { _ in generator.below(1 << 48) }
    for raw in probes {
      let iova = IOVA(raw)
      let checked = try RadixIOPageTable.walk(root: table.root, iova: iova) { pool.loadEntry($0) }
      #expect(checked == (try RadixIOPageTable.walk(root: table.root, memory: pool, iova: iova)))
      #expect(checked == table.walk(iova))
    }
  }

  @Test func outOfRangeAndBadRootsNeverReachTheReader() throws {
    let (_, table, _) = try makeTables()
    var calls = 0
    let beyond = try RadixIOPageTable.walk(root: table.root, iova: IOVA(1 << 48)) { _ in
      calls += 1
      return 0
    }
    #expect(beyond == IOPageWalk(iova: IOVA(1 << 48), steps: [], outcome: .faulted(.addressOutOfRange)))
    #expect(
      thrownErrno {
        _ = try RadixIOPageTable.walk(root: PhysicalAddress(0x1008), iova: IOVA(0)) { _ in
          calls += 1
          return 0
        }
      } == .EINVAL)
    #expect(
      thrownErrno {
        _ = try RadixIOPageTable.walk(root: table.root, iova: IOVA(0), inputAddressBits: 57) { _ in
          calls += 1
          return 0
        }
      } == .EINVAL)
    #expect(calls == 0)
  }

  @Test func faultDescriptionNamesLevelAndAddress() {
    let fault = IOPageWalk.Fault.tableReadFailed(level: 2, address: PhysicalAddress(0x7_0000_2018))
    #expect(fault.description == "table read failed at level 2 (pa 0x700002018)")
  }
}
