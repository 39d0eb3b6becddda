/// The system-wide PASID space (Linux iommu_global_pasid_ida, iommu_alloc_global_pasid /
/// iommu_free_global_pasid). SVA process address spaces and kernel DMA with PASID take their PASIDs
/// here, so one PASID means one address space on every device (SEMANTICS.md §3, §4).
///
/// Hands out the lowest free PASID in [1, min(limit, device max) − 1]: 0 is IOMMU_NO_PASID, and a
/// PASID must fit the device that will use it (iommu_alloc_global_pasid bounds the range by
/// dev->iommu->max_pasids).
public struct GlobalPASIDAllocator: Sendable {
  /// One past the largest PASID this allocator hands out; at most 2^20 (PCIe 6.x §6.20).
  public let limit: UInt32
  private var allocated: Set<UInt32> = []

  /// EINVAL unless 2 ≤ `limit` ≤ 2^20 (at least PASID 1 must exist; PASIDs are 20 bits).
  public init(limit: UInt32 = PASID.limit) throws(IOMMUError) {
    guard limit >= 2, limit <= PASID.limit else {
      throw IOMMUError(.EINVAL, "PASID limit \(limit) outside [2, 2^20]")
    }
    self.limit = limit
  }

  /// PASIDs currently handed out.
  public var allocatedCount: Int { allocated.count }

  public func isAllocated(_ pasid: PASID) -> Bool { allocated.contains(pasid.rawValue) }

  /// The lowest free PASID below `deviceMax` (and below `limit`). ENOSPC when none is free, including
  /// for a device without PASID support (iommu_alloc_global_pasid returns IOMMU_PASID_INVALID).
  public mutating func allocate(below deviceMax: UInt32) throws(IOMMUError) -> PASID {
    let end = min(limit, deviceMax)
    var candidate: UInt32 = 1
    while candidate < end {
      if !allocated.contains(candidate) {
        allocated.insert(candidate)
        return PASID(candidate)
      }
      candidate += 1
    }
    throw IOMMUError(.ENOSPC, "no free global PASID in [1, \(end))")
  }

  /// EINVAL when `pasid` was not handed out (Linux ida_free would WARN).
  public mutating func free(_ pasid: PASID) throws(IOMMUError) {
    guard allocated.remove(pasid.rawValue) != nil else {
      throw IOMMUError(.EINVAL, "\(pasid) is not allocated")
    }
  }
}
