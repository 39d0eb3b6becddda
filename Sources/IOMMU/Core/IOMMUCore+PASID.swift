public import PCIe

/// PASID attachments and the global PASID space (SEMANTICS.md §3; Linux iommu_attach_device_pasid,
/// iommu_detach_device_pasid, iommu_alloc_global_pasid).
///
/// Attachments are kept per group, as Linux's group->pasid_array, and apply to every device of the
/// group; ``pasidTable(of:)`` is the per-device view.
extension IOMMUCore {
  /// Attaches `domain` to `pasid` on the device's group (iommu_attach_device_pasid). Checked in
  /// Linux's order:
  /// - EOPNOTSUPP for a blocked domain: a blocked PASID is expressed by detaching it (Cove's choice:
  ///   Linux asks the domain's set_dev_pasid, which its blocking domains provide only for internal
  ///   use). Identity, dma, dmaFQ, paging, nested and SVA domains can be attached (intel-iommu
  ///   implements set_dev_pasid for all of them).
  /// - EINVAL for another core's domain, PASID 0 (IOMMU_NO_PASID), a PASID ≥ the max of any device
  ///   in the group, or a device without ACS on its path (pci_enable_pasid).
  /// - EBUSY if the PASID is attached to a different domain. Re-attaching the same domain succeeds
  ///   and changes nothing (SEMANTICS.md §3; Linux's xa_insert would say EBUSY here too).
  public func attachDevicePASID(_ domain: IOMMUDomain, to bdf: BDF, pasid: PASID) throws(IOMMUError) {
    let group = try groupState(of: bdf)
    try attachPASID(domain, group, pasid, bond: nil)
  }

  /// Detaches `domain` from `pasid` on the device's group (iommu_detach_device_pasid). EINVAL if that
  /// PASID is not attached to `domain`, or is held by an SVA bond (unbind it instead).
  public func detachDevicePASID(_ domain: IOMMUDomain, from bdf: BDF, pasid: PASID) throws(IOMMUError) {
    let group = try groupState(of: bdf)
    guard let attachment = group.pasids[pasid], attachment.domain === domain else {
      throw IOMMUError(.EINVAL, "\(pasid) of \(bdf) is not attached to \(domain)")
    }
    guard attachment.bond == nil else {
      throw IOMMUError(.EINVAL, "\(pasid) of \(bdf) belongs to an SVA bond; unbind it")
    }
    group.pasids[pasid] = nil
    iotlb.invalidate(domain: domain.id, pasid: pasid)
  }

  /// The device's PASID table: every attached PASID and its domain.
  public func pasidTable(of bdf: BDF) throws(IOMMUError) -> [PASID: IOMMUDomain] {
    try groupState(of: bdf).pasids.mapValues(\.domain)
  }

  /// A PASID from the global space usable by this device (iommu_alloc_global_pasid): the lowest free
  /// one in [1, min(limit, device max) − 1]. ENOSPC when none is free or the device has no PASIDs.
  public func allocateGlobalPASID(for bdf: BDF) throws(IOMMUError) -> PASID {
    let device = try device(bdf)
    return try pasidAllocator.allocate(below: device.description.maxPASID)
  }

  /// Returns a global PASID (iommu_free_global_pasid). EINVAL if it was not allocated; EBUSY if it is
  /// still attached somewhere.
  public func freeGlobalPASID(_ pasid: PASID) throws(IOMMUError) {
    guard pasidAllocator.isAllocated(pasid) else { throw IOMMUError(.EINVAL, "\(pasid) is not allocated") }
    for group in groupsByID.values where group.pasids[pasid] != nil {
      throw IOMMUError(.EBUSY, "\(pasid) is still attached to \(group.id)")
    }
    try pasidAllocator.free(pasid)
  }

  /// Kernel DMA with PASID, Jason Gunthorpe's model (SEMANTICS.md §3): allocates a global PASID and
  /// attaches it to the domain the device's requests without PASID already use, so the driver keeps
  /// using the normal DMA API and IOVAs mean the same with or without the PASID; the driver never
  /// chooses its own trust. (As idxd does: iommu_alloc_global_pasid, iommu_get_domain_for_dev,
  /// iommu_attach_device_pasid.) ENOSPC, or the attach errors; the PASID is freed on failure.
  public func enableKernelDMAPASID(_ bdf: BDF) throws(IOMMUError) -> PASID {
    let group = try groupState(of: bdf)
    let pasid = try allocateGlobalPASID(for: bdf)
    do throws(IOMMUError) {
      try attachPASID(group.domain, group, pasid, bond: nil)
    } catch {
      try? pasidAllocator.free(pasid)
      throw error
    }
    kernelDMAPASIDs[bdf, default: []].append(pasid)
    return pasid
  }

  /// Undoes ``enableKernelDMAPASID(_:)``: detaches and frees the PASID. EINVAL if it is not a kernel
  /// DMA PASID of this device.
  public func disableKernelDMAPASID(_ bdf: BDF, pasid: PASID) throws(IOMMUError) {
    let group = try groupState(of: bdf)
    guard let index = kernelDMAPASIDs[bdf]?.firstIndex(of: pasid) else {
      throw IOMMUError(.EINVAL, "\(pasid) is not a kernel DMA PASID of \(bdf)")
    }
    kernelDMAPASIDs[bdf]!.remove(at: index)
    if let domain = group.pasids[pasid]?.domain { iotlb.invalidate(domain: domain.id, pasid: pasid) }
    group.pasids[pasid] = nil
    try pasidAllocator.free(pasid)
  }

  /// The checks and the insertion shared by attachDevicePASID, kernel DMA PASIDs and SVA.
  func attachPASID(_ domain: IOMMUDomain, _ group: GroupState, _ pasid: PASID, bond: SVABond?)
    throws(IOMMUError)
  {
    if domain.type == .blocked {
      throw IOMMUError(.EOPNOTSUPP, "\(domain) cannot be attached to a PASID; detach the PASID instead")
    }
    try checkOwned(domain)
    guard pasid != .noPASID else { throw IOMMUError(.EINVAL, "PASID 0 is IOMMU_NO_PASID") }
    for description in descriptions(of: group) {
      guard pasid.rawValue < description.maxPASID else {
        throw IOMMUError(
          .EINVAL, "\(pasid) ≥ \(description.bdf)'s max PASID \(description.maxPASID)")
      }
      guard description.acsOnPASIDPath else {
        throw IOMMUError(.EINVAL, "\(description.bdf) has no ACS on its path: PASIDs are not isolated")
      }
    }
    if let existing = group.pasids[pasid] {
      guard existing.domain === domain, bond == nil, existing.bond == nil else {
        throw IOMMUError(.EBUSY, "\(pasid) of \(group.id) is attached to \(existing.domain)")
      }
      return
    }
    group.pasids[pasid] = PASIDAttachment(domain: domain, bond: bond)
  }
}
