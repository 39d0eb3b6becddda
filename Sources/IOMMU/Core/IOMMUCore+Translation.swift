public import PCIe

/// DMA translation and fault reporting (Linux iommu_report_device_fault for unrecoverable faults).
/// No IOTLB here: every request walks the attached domain.
extension IOMMUCore {
  /// Translates one DMA request. Without a PASID (nil or PASID 0) it goes through the group's
  /// current domain; with one, through the domain attached to that PASID. A failure is recorded on
  /// the fault queue and returned: unknown device, blocked domain, unknown PASID (none attached or ≥
  /// the device's max), exited process (the PASID stays attached but is blocked until unbind,
  /// SEMANTICS.md §4), not mapped, or missing permission.
  public func translate(device bdf: BDF, pasid: PASID?, iova: IOVA, access: IOAccess)
    -> Result<IOTranslation, IOFault>
  {
    let pasid = pasid == .noPASID ? nil : pasid
    func fault(_ reason: IOFaultReason, _ domain: IOMMUDomain?) -> Result<IOTranslation, IOFault> {
      let record = IOFault(
        device: bdf, pasid: pasid, address: iova, access: access, reason: reason, domain: domain?.id)
      faultQueue.report(record)
      return .failure(record)
    }
    guard let device = devicesByBDF[bdf], let group = groupsByID[device.group] else {
      return fault(.unknownDevice, nil)
    }
    let domain: IOMMUDomain
    if let pasid {
      guard pasid.rawValue < device.description.maxPASID, let attachment = group.pasids[pasid] else {
        return fault(.unknownPASID, nil)
      }
      domain = attachment.domain
    } else {
      domain = group.domain
    }
    if domain.type == .blocked { return fault(.blocked, domain) }
    if domain.type == .sva, domain.addressSpace?.isAlive != true {
      return fault(.addressSpaceExited, domain)
    }
    // The IOTLB first (tagged by domain and PASID); a miss walks the domain and fills it. Only
    // translated domains are cached: identity and blocked need no walk.
    let tag = pasid ?? .noPASID
    let cacheable = domain.type.isPaging || domain.type == .sva
    let translation: IOTranslation
    if cacheable, let cached = iotlb.lookup(domain: domain.id, pasid: tag, iova: iova) {
      translation = cached
    } else {
      guard let walked = domain.lookup(iova) else { return fault(.notMapped, domain) }
      if cacheable { iotlb.insert(domain: domain.id, pasid: tag, iova: iova, translation: walked) }
      translation = walked
    }
    guard translation.protection.contains(access.requiredProtection) else {
      return fault(.permission, domain)
    }
    return .success(translation)
  }

  /// Removes and returns the recorded faults, oldest first. Dropped faults stay counted in
  /// ``faultQueue``'s `overflowCount`.
  public func drainFaults() -> [IOFault] { faultQueue.drain() }

  /// Faults dropped because the queue was full.
  public var faultOverflowCount: Int { faultQueue.overflowCount }
}
