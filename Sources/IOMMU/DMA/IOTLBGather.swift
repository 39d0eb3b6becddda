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
///
/// Storage: the first range and the freed page sizes are held inline (a range and a bit mask), so the
/// usual gather — one unmap, one run of pages — allocates nothing; only a second disjoint range
/// allocates the array of the others.
public struct IOTLBGather: Sendable, Hashable {
  /// The lowest gathered range; empty when nothing is gathered.
  private var first: Range<IOVA> = IOVA(0)..<IOVA(0)
  /// The gathered ranges after `first`, sorted, disjoint and non-adjacent.
  private var rest: [Range<IOVA>] = []
  /// Bit `PageSize.leafLevel - 1` per freed leaf size.
  private var pageSizeMask: UInt8 = 0

  public init() {}

  /// The gathered IOVA ranges, sorted, disjoint and non-adjacent.
  public var ranges: [Range<IOVA>] {
    first.isEmpty ? [] : [first] + rest
  }

  /// Leaf sizes that were freed (Linux `gather->pgsize`, as a set since several may be gathered).
  public var freedPageSizes: Set<PageSize> {
    Set(PageSize.allCases.filter { pageSizeMask & Self.bit($0) != 0 })
  }

  public var isEmpty: Bool { first.isEmpty }

  @inline(__always)
  private static func bit(_ size: PageSize) -> UInt8 { 1 << UInt8(size.leafLevel - 1) }

  /// Adds an unmapped range. An empty range adds nothing; a range running past the top of the address
  /// space is clamped to it.
  public mutating func add(_ iova: IOVA, size: UInt64, pageSize: PageSize = .size4K) {
    guard size > 0 else { return }
    let (end, overflow) = iova.rawValue.addingReportingOverflow(size)
    let added = iova..<IOVA(overflow ? UInt64.max : end)
    pageSizeMask |= Self.bit(pageSize)
    if first.isEmpty {
      first = added
      return
    }
    if rest.isEmpty && added.lowerBound <= first.upperBound && first.lowerBound <= added.upperBound {
      // Touches or overlaps the only range (the usual next page of an unmap): grow it in place.
      first = min(first.lowerBound, added.lowerBound)..<max(first.upperBound, added.upperBound)
      return
    }
    var all = ranges
    Self.insert(added, into: &all)
    first = all[0]
    rest = Array(all.dropFirst())
  }

  /// Inserts `added` into the sorted, disjoint, non-adjacent `ranges`, merging what it touches.
  private static func insert(_ added: Range<IOVA>, into ranges: inout [Range<IOVA>]) {
    var merged = added
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
    guard !first.isEmpty else {
      pageSizeMask = 0
      return 0
    }
    iotlb.invalidate(domain: domain, pasid: pasid, range: first)
    for range in rest { iotlb.invalidate(domain: domain, pasid: pasid, range: range) }
    let issued = 1 + rest.count
    first = IOVA(0)..<IOVA(0)
    rest.removeAll(keepingCapacity: true)
    pageSizeMask = 0
    return issued
  }
}
