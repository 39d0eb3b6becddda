import IOMMU

/// A 4 KiB-only page table over a dictionary, following `IOPageTableProtocol`'s contract, so the DMA
/// layer can be tested while the real radix table is written elsewhere. Optionally reports 2 MiB
/// leaves for aligned 2 MiB maps (to exercise the gather's page sizes) and can fail the next map.
final class DictionaryPageTable: IOPageTableProtocol {
  struct Leaf: Hashable {
    var physical: UInt64
    var protection: IOProtection
    var pageSize: PageSize
    var leafBase: UInt64
  }

  private(set) var pages: [UInt64: Leaf] = [:]  // 4 KiB page number → leaf
  let inputBits: UInt64
  let useLargeLeaves: Bool
  var failNextMap: IOMMUError?
  private(set) var mapCalls = 0
  private(set) var unmapCalls = 0

  init(inputBits: UInt64 = 48, useLargeLeaves: Bool = false) {
    self.inputBits = inputBits
    self.useLargeLeaves = useLargeLeaves
  }

  var mappedBytes: UInt64 { UInt64(pages.count) * 4096 }

  func map(_ iova: IOVA, to physical: PhysicalAddress, size: UInt64, protection: IOProtection)
    throws(IOMMUError)
  {
    mapCalls += 1
    if let failure = failNextMap {
      failNextMap = nil
      throw failure
    }
    guard size > 0, (iova.rawValue | physical.rawValue | size) & 4095 == 0 else {
      throw IOMMUError(.EINVAL, "misaligned map")
    }
    guard iova.rawValue + size <= (1 << inputBits) else { throw IOMMUError(.ERANGE, "beyond input width") }
    let first = iova.rawValue >> 12
    let count = size >> 12
    for page in first..<(first + count) where pages[page] != nil {
      throw IOMMUError(.EEXIST, "page 0x\(String(page << 12, radix: 16)) already mapped")
    }
    let large =
      useLargeLeaves && (iova.rawValue | physical.rawValue | size) & (PageSize.size2M.bytes - 1) == 0
    for index in 0..<count {
      let address = iova.rawValue + index * 4096
      let leafBase = large ? address & ~(PageSize.size2M.bytes - 1) : address
      let leafPhysical = physical.rawValue + (leafBase - iova.rawValue)
      pages[first + index] = Leaf(
        physical: leafPhysical, protection: protection, pageSize: large ? .size2M : .size4K,
        leafBase: leafBase)
    }
  }

  func unmap(_ iova: IOVA, size: UInt64) throws(IOMMUError) -> UInt64 {
    unmapCalls += 1
    guard (iova.rawValue | size) & 4095 == 0 else { throw IOMMUError(.EINVAL, "misaligned unmap") }
    var unmapped: UInt64 = 0
    var page = iova.rawValue >> 12
    while unmapped < size, pages.removeValue(forKey: page) != nil {
      unmapped += 4096
      page += 1
    }
    return unmapped
  }

  func translate(_ iova: IOVA) -> IOTranslation? {
    guard let leaf = pages[iova.rawValue >> 12] else { return nil }
    return IOTranslation(
      physical: PhysicalAddress(leaf.physical + (iova.rawValue - leaf.leafBase)), protection: leaf.protection,
      pageSize: leaf.pageSize)
  }
}
