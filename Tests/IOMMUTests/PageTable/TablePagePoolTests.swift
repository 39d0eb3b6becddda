import IOMMU
import Testing

@Suite struct TablePagePoolTests {
  @Test func pagesAreZeroedAlignedAndDistinct() throws {
    let pool = try TablePagePool(maxPages: 4)
    let first = try #require(pool.allocateTablePage())
    let second = try #require(pool.allocateTablePage())
    #expect(first == PhysicalAddress(0x1_0000_0000))
    #expect(second == PhysicalAddress(0x1_0000_1000))
    #expect(pool.allocatedPages == 2)
    #expect(pool.bytesInUse == 8192)
    for index in 0..<512 {
      #expect(pool.loadEntry(second.advanced(by: UInt64(index) * 8)) == 0)
    }
  }

  @Test func storedEntriesReadBack() throws {
    let pool = try TablePagePool(maxPages: 2)
    let page = try #require(pool.allocateTablePage())
    pool.storeEntry(0xDEAD_BEEF_0000_1003, at: page.advanced(by: 0xFF8))
    #expect(pool.loadEntry(page.advanced(by: 0xFF8)) == 0xDEAD_BEEF_0000_1003)
    #expect(pool.loadEntry(page.advanced(by: 0xFF0)) == 0)
  }

  @Test func exhaustionReturnsNilAndFreedPagesComeBackZeroed() throws {
    let pool = try TablePagePool(base: PhysicalAddress(0x8000_0000), maxPages: 2)
    let first = try #require(pool.allocateTablePage())
    _ = try #require(pool.allocateTablePage())
    #expect(pool.allocateTablePage() == nil)
    pool.storeEntry(0x1234_5003, at: first.advanced(by: 16))
    pool.freeTablePage(first)
    #expect(pool.allocatedPages == 1)
    #expect(pool.allocatedPageAddresses == [PhysicalAddress(0x8000_1000)])
    let again = try #require(pool.allocateTablePage())
    #expect(again == first)
    #expect(pool.loadEntry(again.advanced(by: 16)) == 0)
    #expect(pool.allocateTablePage() == nil)
  }

  @Test func freedPagesComeBackZeroedWhateverWasStoredInThem() throws {
    let pool = try TablePagePool(maxPages: 1)
    let page = try #require(pool.allocateTablePage())
    // Not present (R = W = 0) but non-zero: the page must still be cleared on free.
    pool.storeEntry(0x5000, at: page.advanced(by: 8))
    // Present, then cleared again: nothing is left to clear.
    pool.storeEntry(0x6003, at: page.advanced(by: 16))
    pool.storeEntry(0, at: page.advanced(by: 16))
    pool.freeTablePage(page)
    let again = try #require(pool.allocateTablePage())
    for index in 0..<512 {
      #expect(pool.loadEntry(again.advanced(by: UInt64(index) * 8)) == 0)
    }
  }

  @Test func badConfigurationIsRefused() {
    #expect(thrownErrno { _ = try TablePagePool(base: PhysicalAddress(0x1800), maxPages: 1) } == .EINVAL)
    #expect(thrownErrno { _ = try TablePagePool(maxPages: -1) } == .EINVAL)
    #expect(
      thrownErrno { _ = try TablePagePool(base: PhysicalAddress((1 << 52) - 0x1000), maxPages: 2) } == .EINVAL
    )
    #expect(
      thrownErrno { _ = try TablePagePool(base: PhysicalAddress((1 << 52) - 0x1000), maxPages: 1) } == nil)
  }
}
