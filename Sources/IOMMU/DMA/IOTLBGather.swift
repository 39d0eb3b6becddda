/// Collects what an unmap sequence tore down so the IOTLB is invalidated once, afterwards — Linux's
/// `struct iommu_iotlb_gather` (include/linux/iommu.h): `iommu_iotlb_gather_add_page` grows the
/// range as pages are unmapped, `iommu_iotlb_sync` flushes it, and the gather remembers the page size
/// so the driver can pick an invalidation granularity.
///
/// Difference from Linux: Linux keeps one [start, end] span and, for drivers that cannot over-invalidate
/// cheaply, syncs early when a disjoint range arrives (`iommu_iotlb_gather_is_disjoint`). Cove keeps a
/// short sorted list of disjoint ranges instead — contiguous or overlapping ones merge — so a flush never
/// invalidates IOVAs that were not unmapped (over-invalidation would hide a missing-invalidation bug in
/// tests) and still costs one call.
public struct IOTLBGather: Sendable, Hashable {
  /// The gathered IOVA ranges, sorted, disjoint and non-adjacent.
  public private(set) var ranges: [Range<IOVA>] = []
  /// Leaf sizes that were freed (Linux `gather->pgsize`, as a set since several may be gathered).
  public private(set) var freedPageSizes: Set<PageSize> = []

  public init() {}

  public var isEmpty: Bool { ranges.isEmpty }

  /// Adds an unmapped range. An empty range adds nothing; a range running past the top of the address
  /// space is clamped to it.
  public mutating func add(_ iova: IOVA, size: UInt64, pageSize: PageSize = .size4K) {
    guard size > 0 else { return }
    let (end, overflow) = iova.rawValue.addingReportingOverflow(size)
    var merged = iova..<IOVA(overflow ? UInt64.max : end)
    freedPageSizes.insert(pageSize)
    // Ranges touching or overlapping `merged` form one run in the sorted list.
    var first = 0
    while first < ranges.count && ranges[first].upperBound < merged.lowerBound { first += 1 }
    var last = first
    while last < ranges.count && ranges[last].lowerBound <= merged.upperBound {
      merged =
        min(merged.lowerBound, ranges[last].lowerBound)..<max(merged.upperBound, ranges[last].upperBound)
      last += 1
    }
    ranges.replaceSubrange(first..<last, with: CollectionOfOne(merged))
  }

  /// Invalidates every gathered range in `iotlb` for `domain` (and `pasid`; all of the domain's PASIDs
  /// when nil, as a DMA domain may be attached to PASIDs too — SEMANTICS.md §3) and empties the gather.
  /// - Returns: the number of range invalidations issued.
  @discardableResult
  public mutating func flush(into iotlb: IOTLB, domain: DomainID, pasid: PASID?) -> Int {
    let issued = ranges.count
    for range in ranges { iotlb.invalidate(domain: domain, pasid: pasid, range: range) }
    ranges.removeAll(keepingCapacity: true)
    freedPageSizes.removeAll(keepingCapacity: true)
    return issued
  }
}
