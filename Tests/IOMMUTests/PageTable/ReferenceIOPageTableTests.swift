import IOMMU
import Testing

/// The reference model on its own: the cases its simple bookkeeping must get right (large leaves found
/// from any address inside them, the overlap check's two strategies).
@Suite struct ReferenceIOPageTableTests {
  @Test func translatesFromAnywhereInsideALargeLeaf() throws {
    let table = try ReferenceIOPageTable()
    try table.map(
      IOVA(0x4000_0000), to: PhysicalAddress(0x8000_0000), size: 0x4000_0000, protection: [.read, .shared])
    #expect(
      table.translate(IOVA(0x7FFF_FFFF))
        == IOTranslation(
          physical: PhysicalAddress(0xBFFF_FFFF), protection: [.read, .shared], pageSize: .size1G))
    #expect(table.translate(IOVA(0x8000_0000)) == nil)
    #expect(table.translate(IOVA(0x3FFF_FFFF)) == nil)
  }

  @Test func overlapFoundWithFewAndWithManyLeaves() throws {
    let table = try ReferenceIOPageTable()
    try table.map(IOVA(0x20_0000), to: PhysicalAddress(0), size: 0x20_0000, protection: .read)
    // One leaf, a range of many pages: checked by looking at the leaves.
    #expect(
      thrownErrno { try table.map(IOVA(0), to: PhysicalAddress(0), size: 0x4000_0000, protection: .read) }
        == .EEXIST)
    try table.map(IOVA(0x4000_0000), to: PhysicalAddress(0x1000), size: 0x10_0000, protection: .read)
    // Many leaves, a short range: checked page by page.
    #expect(
      thrownErrno { try table.map(IOVA(0x3F_F000), to: PhysicalAddress(0), size: 0x2000, protection: .read) }
        == .EEXIST)
    #expect(
      thrownErrno {
        try table.map(IOVA(0x400F_F000), to: PhysicalAddress(0), size: 0x2000, protection: .read)
      } == .EEXIST)
    try table.map(IOVA(0x40_0000), to: PhysicalAddress(0), size: 0x1000, protection: .read)
    #expect(table.mappedBytes == 0x20_0000 + 0x10_0000 + 0x1000)
  }
}
