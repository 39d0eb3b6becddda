/// The DMA API over one DMA or DMA-FQ domain — what Linux's drivers/iommu/dma-iommu.c does for
/// `dma_map_page`/`dma_unmap_page` when a device sits behind an IOMMU: allocate an IOVA, map the pages,
/// hand the device the IOVA (with the buffer's offset inside its first page kept); on unmap, tear the
/// mapping down, make the IOTLB forget it, and only then let the IOVA be reused.
///
/// Two invalidation modes (SEMANTICS.md §2):
/// - strict (IOMMU_DOMAIN_DMA): unmap → page-table unmap into an `IOTLBGather` → `iommu_iotlb_sync` →
///   free the IOVA. When `unmap` returns, no IOTLB entry for the range survives.
/// - lazy (IOMMU_DOMAIN_DMA_FQ): unmap → page-table unmap → queue the IOVA in the flush queue. The
///   IOTLB may keep translating the old IOVA until the next flush (that is the window lazy mode accepts
///   for speed), but the IOVA is not reused until a flush that began after the unmap has finished, so
///   a stale entry can only ever reach the buffer the driver just unmapped — never someone else's.
///
/// Per mapping the layer keeps nothing of its own (the allocator's head bit and the page table are the
/// record), which is what keeps the per-mapping budget at ~24 B.
public final class DMAMappingLayer {
  /// How unmapped IOVAs are invalidated and recycled.
  public enum InvalidationMode: Sendable, Hashable {
    /// IOMMU_DOMAIN_DMA: synchronous IOTLB invalidation on every unmap.
    case strict
    /// IOMMU_DOMAIN_DMA_FQ: deferred invalidation through a flush queue of this many entries.
    case lazy(queueCapacity: Int)
  }

  /// Counters for tests and the bench.
  public struct Statistics: Sendable, Hashable {
    public var maps = 0
    public var unmaps = 0
    /// Maps refused (no IOVA, or the page table failed); no IOVA was kept for them.
    public var failedMaps = 0
    /// Maps that fell back above 4 GiB after the 32-bit attempt failed.
    public var highAllocations = 0
    /// Range invalidations issued synchronously (strict).
    public var syncInvalidations = 0
    /// Flush-queue flushes, and those forced by a full queue.
    public var flushes = 0
    public var forcedFlushes = 0
  }

  public let domainID: DomainID
  public let pageTable: any IOPageTableProtocol
  /// `pageTable` when it is a `RadixIOPageTable` (every DMA domain's is): map and unmap call it
  /// directly, and its unmap reports the leaves it clears into the gather, so no walk per page is
  /// needed beforehand to learn their sizes. Unmanaged because `pageTable` holds the same object
  /// strongly for the layer's lifetime: a strong optional cost a retain/release per map and unmap.
  let radixTable: Unmanaged<RadixIOPageTable>?
  public let iotlb: IOTLB
  public let mode: InvalidationMode
  public let allocator: IOVAAllocator
  /// The first IOVA the device cannot emit (exclusive; the device's DMA mask + 1, capped at the aperture).
  public let dmaLimit: IOVA
  /// Whether the next map tries below 4 GiB first — Linux's `pci_32bit_workaround`: on by default for
  /// devices that can address more, switched off for good the first time the 32-bit attempt fails.
  ///
  /// (The mutable state below is not checked for exclusivity dynamically: the layer is single-threaded,
  /// STYLE.md rule 8, and one check per counter update would show on the map/unmap path.)
  @exclusivity(unchecked) public private(set) var tryBelow4GiBFirst: Bool
  @exclusivity(unchecked) public private(set) var flushQueue: IOVAFlushQueue?
  @exclusivity(unchecked) public private(set) var statistics = Statistics()
  /// Mappings made and not yet unmapped.
  @exclusivity(unchecked) public private(set) var liveMappings = 0
  /// Bytes (whole pages) currently mapped through this layer.
  @exclusivity(unchecked) public private(set) var mappedBytes: UInt64 = 0

  /// The IOMMU page size the layer maps with (the page-table contract's 4 KiB granule).
  public static let pageSize: UInt64 = PageSize.size4K.bytes
  static let fourGiB: UInt64 = 1 << 32

  /// - Parameters:
  ///   - aperture: the domain's IOVA aperture; IOVA 0 is never handed out (dma-iommu starts at pfn 1).
  ///   - reserved: IOVA ranges never to hand out (MSI doorbell window, host-bridge windows:
  ///     `iova_reserve_iommu_regions`).
  ///   - dmaLimit: exclusive end of what the device can address (its DMA mask + 1).
  ///   - preferBelow4GiB: try a 32-bit IOVA first when the device can address more (dma-iommu does
  ///     for PCI devices unless `iommu.forcedac=1`).
  /// - Throws: EINVAL for an empty aperture, a limit below it, or a bad queue capacity; EBUSY if
  ///   reserved ranges overlap (cannot happen on a fresh allocator).
  public init(
    domainID: DomainID, pageTable: any IOPageTableProtocol, iotlb: IOTLB, mode: InvalidationMode,
    aperture: Range<IOVA>, reserved: [Range<IOVA>], dmaLimit: IOVA, preferBelow4GiB: Bool = true
  ) throws(IOMMUError) {
    let start = max(aperture.lowerBound.rawValue, Self.pageSize)
    guard start < aperture.upperBound.rawValue else {
      throw IOMMUError(.EINVAL, "DMA aperture \(aperture) holds no allocatable page")
    }
    guard dmaLimit.rawValue > start else {
      throw IOMMUError(.EINVAL, "DMA limit \(dmaLimit) is below the aperture \(aperture)")
    }
    self.domainID = domainID
    self.pageTable = pageTable
    self.radixTable = (pageTable as? RadixIOPageTable).map { Unmanaged.passUnretained($0) }
    self.iotlb = iotlb
    self.mode = mode
    self.dmaLimit = min(dmaLimit, aperture.upperBound)
    self.tryBelow4GiBFirst = preferBelow4GiB && self.dmaLimit.rawValue > Self.fourGiB
    allocator = try IOVAAllocator(granule: Self.pageSize, start: IOVA(start), end: aperture.upperBound)
    for range in reserved where !range.isEmpty { try allocator.reserve(range) }
    if case .lazy(let capacity) = mode { flushQueue = try IOVAFlushQueue(capacity: capacity) }
  }

  // MARK: - Map

  /// Maps `size` bytes at `physical` for the device and returns the IOVA to give it: the IOVA of the
  /// first page plus `physical`'s offset within its page (`iommu_dma_map_page` keeps `iova_offset`).
  /// - Throws: EINVAL for a zero or overflowing size; ENOMEM when no IOVA space is left below the DMA
  ///   limit; any page-table error (then the IOVA is freed again — nothing leaks).
  public func map(physical: PhysicalAddress, size: UInt64, protection: IOProtection) throws(IOMMUError)
    -> IOVA
  {
    let offset = physical.rawValue & (Self.pageSize - 1)
    guard size > 0, let length = Self.pageSpan(offset: offset, size: size),
      physical.rawValue.addingReportingOverflow(size).overflow == false
    else {
      statistics.failedMaps += 1
      throw IOMMUError(.EINVAL, "DMA map of 0x\(String(size, radix: 16)) bytes at \(physical)")
    }
    guard let iova = allocateIOVA(length) else {
      statistics.failedMaps += 1
      throw IOMMUError(.ENOMEM, "no IOVA space for 0x\(String(length, radix: 16)) bytes below \(dmaLimit)")
    }
    do throws(IOMMUError) {
      if let radixTable {
        let failure = radixTable._withUnsafeGuaranteedRef { table -> IOMMUError? in
          do throws(IOMMUError) {
            try table.map(
              iova, to: PhysicalAddress(physical.rawValue - offset), size: length, protection: protection)
            return nil
          } catch { return error }
        }
        if let failure { throw failure }
      } else {
        try pageTable.map(
          iova, to: PhysicalAddress(physical.rawValue - offset), size: length, protection: protection)
      }
    } catch {
      // Give the IOVA straight back: nothing was mapped, so nothing can be cached for it.
      try? allocator.free(iova, size: length)
      statistics.failedMaps += 1
      throw error
    }
    statistics.maps += 1
    liveMappings += 1
    mappedBytes += length
    return iova.advanced(by: offset)
  }

  /// `iommu_dma_alloc_iova`: 32-bit first for devices that can address more, then up to the limit.
  private func allocateIOVA(_ length: UInt64) -> IOVA? {
    if tryBelow4GiBFirst {
      if let low = allocator.allocate(size: length, limit: IOVA(Self.fourGiB)) { return low }
      tryBelow4GiBFirst = false
    }
    guard let iova = allocator.allocate(size: length, limit: dmaLimit) else { return nil }
    if iova.rawValue >= Self.fourGiB { statistics.highAllocations += 1 }
    return iova
  }

  /// Whole pages covering `size` bytes from `offset` in the first page; nil on overflow.
  static func pageSpan(offset: UInt64, size: UInt64) -> UInt64? {
    let (end, overflow) = offset.addingReportingOverflow(size)
    guard !overflow, end <= UInt64.max - (pageSize - 1) else { return nil }
    return (end + pageSize - 1) & ~(pageSize - 1)
  }

  // MARK: - Unmap

  /// Unmaps what `map` returned (`iova` and `size` as the driver passed them).
  /// - strict: page-table unmap, gather, IOTLB sync, then free the IOVA.
  /// - lazy: page-table unmap, then queue the IOVA (forcing a flush first when the queue is full).
  /// - Throws: EINVAL if `(iova, size)` is not a live mapping of this layer; nothing changes then.
  public func unmap(iova: IOVA, size: UInt64) throws(IOMMUError) {
    let offset = iova.rawValue & (Self.pageSize - 1)
    let base = IOVA(iova.rawValue - offset)
    guard size > 0, let length = Self.pageSpan(offset: offset, size: size),
      let allocated = allocator.allocationSize(for: length), allocator.isAllocated(base, size: length)
    else {
      throw Self.notMapped(iova, size)
    }
    var gather = IOTLBGather()
    if let radixTable {
      // The unmap reports each leaf it clears into the gather. A hole at `base` unmaps nothing: in lazy
      // mode a queued IOVA is still allocated, but unmapped.
      let outcome = radixTable._withUnsafeGuaranteedRef { table -> Result<UInt64, IOMMUError> in
        do throws(IOMMUError) {
          return .success(try table.unmap(base, size: length, reportingLeavesTo: &gather))
        } catch { return .failure(error) }
      }
      guard try outcome.get() != 0 else { throw Self.notMapped(iova, size) }
    } else {
      guard pageTable.translate(base) != nil else { throw Self.notMapped(iova, size) }
      // Learn the leaf sizes for the gather before the entries disappear.
      var cursor: UInt64 = 0
      while cursor < length {
        let leaf = pageTable.translate(base.advanced(by: cursor))?.pageSize ?? .size4K
        let step = min(leaf.bytes - (base.rawValue &+ cursor) & (leaf.bytes - 1), length - cursor)
        gather.add(base.advanced(by: cursor), size: step, pageSize: leaf)
        cursor += step
      }
      // A hole inside our own mapping cannot arise; the IOVA is recycled either way.
      _ = try pageTable.unmap(base, size: length)
    }
    statistics.unmaps += 1
    liveMappings -= 1
    mappedBytes -= length
    switch mode {
    case .strict:
      statistics.syncInvalidations += gather.flush(into: iotlb, domain: domainID, pasid: nil)
      // Checked by `isAllocated` above, and nothing has touched the allocator since.
      allocator.freeChecked(base, size: allocated)
    case .lazy:
      releaseFlushed()
      // A full queue forces a flush (dma-iommu does the same in queue_iova). With a flush of the
      // caller's still in progress, entries queued under it need one more, hence the loop; it ends
      // once the finish count reaches the start count, when everything queued has been released.
      while flushQueue?.isFull == true {
        statistics.forcedFlushes += 1
        flush()
      }
      _ = flushQueue?.enqueue(base, size: allocated)
    }
  }

  /// The EINVAL of an unmap that names no live mapping of this layer (built only on that path).
  private static func notMapped(_ iova: IOVA, _ size: UInt64) -> IOMMUError {
    IOMMUError(.EINVAL, "DMA unmap of \(iova) size 0x\(String(size, radix: 16)): not mapped here")
  }

  // MARK: - Flush queue (lazy mode)

  /// One complete flush-queue flush (`fq_flush_iotlb` + `fq_ring_free`): begin, invalidate the whole
  /// domain in the IOTLB, finish, then give every covered IOVA back to the allocator. A no-op in strict
  /// mode.
  public func flush() {
    guard flushQueue != nil else { return }
    beginFlush()
    finishFlush()
  }

  /// The first half of a flush: the start count moves and the domain's IOTLB entries are invalidated.
  /// Exposed so tests can interleave an unmap with a flush in progress.
  public func beginFlush() {
    guard flushQueue != nil else { return }
    flushQueue?.beginFlush()
    iotlb.invalidate(domain: domainID)
    statistics.flushes += 1
  }

  /// The second half: the oldest flush in progress completes and the IOVAs it covers are released.
  public func finishFlush() {
    guard flushQueue?.flushInProgress == true else { return }
    try? flushQueue?.finishFlush()
    releaseFlushed()
  }

  private func releaseFlushed() {
    guard flushQueue?.hasReleasable == true else { return }
    let allocator = allocator
    flushQueue?.drainReleasable { entry in
      // Queued entries were validated at unmap time (`isAllocated`) and stayed allocated and out of the
      // magazines while queued, so they are freed without checking again.
      assert(allocator.isAllocated(entry.iova, size: entry.size), "queued IOVA \(entry.iova) not live")
      allocator.freeChecked(entry.iova, size: entry.size)
    }
  }

  // MARK: - Device side

  /// A device access at `iova` (with `pasid`, or the RID's NO_PASID): the IOTLB first, else a page walk
  /// that fills the IOTLB — the model of how a stale entry could be used, for tests.
  public func translate(_ iova: IOVA, pasid: PASID = .noPASID) -> IOTranslation? {
    if let hit = iotlb.lookup(domain: domainID, pasid: pasid, iova: iova) { return hit }
    guard let walked = pageTable.translate(iova) else { return nil }
    iotlb.insert(domain: domainID, pasid: pasid, iova: iova, translation: walked)
    return walked
  }
}
