public import PCIe

extension IOMMUCore {
  /// The kernel DMA API for a device (dma_map_page / dma_unmap_page through dma-iommu): maps through
  /// the DMA layer of the device's current domain. EINVAL when that domain is not a DMA API domain
  /// (dma / dmaFQ): a device whose group is user-owned, blocked, identity or given a paging domain
  /// has no DMA API mappings (SEMANTICS.md §1–2).
  public func dmaMap(
    device bdf: BDF, physical: PhysicalAddress, size: UInt64, protection: IOProtection
  ) throws(IOMMUError) -> IOVA {
    try dmaLayer(of: bdf).map(physical: physical, size: size, protection: protection)
  }

  /// Unmaps what ``dmaMap(device:physical:size:protection:)`` returned. Strict domains invalidate the
  /// IOTLB before returning; lazy ones queue the IOVA until a flush that began after the unmap ends.
  public func dmaUnmap(device bdf: BDF, iova: IOVA, size: UInt64) throws(IOMMUError) {
    try dmaLayer(of: bdf).unmap(iova: iova, size: size)
  }

  /// Flushes every DMA-FQ domain's queue now (Linux does it from a timer and when a queue fills).
  public func flushDMAQueues() {
    var seen: Set<DomainID> = []
    for group in groupsByID.values {
      for domain in [group.domain, group.defaultDomain] where seen.insert(domain.id).inserted {
        domain.dma?.flush()
      }
    }
  }

  func dmaLayer(of bdf: BDF) throws(IOMMUError) -> DMAMappingLayer {
    let group = try groupState(of: bdf)
    guard let layer = group.domain.dma else {
      throw IOMMUError(.EINVAL, "\(bdf) is attached to \(group.domain), not a DMA API domain")
    }
    return layer
  }
}
