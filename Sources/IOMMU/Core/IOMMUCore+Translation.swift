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
    switch translator(device: bdf, pasid: pasid) {
    case .success(let translator): return translator.translate(iova, access: access)
    case .failure(let refusal):
      let pasid = pasid == .noPASID ? nil : pasid
      let record = IOFault(
        device: bdf, pasid: pasid, address: iova, access: access, reason: refusal.reason,
        domain: refusal.domain)
      faultQueue.report(record)
      return .failure(record)
    }
  }

  /// Why requests from a device cannot be translated at all (before any address is looked at).
  public struct TranslatorRefusal: Error, Hashable, Sendable {
    public var reason: IOFaultReason
    public var domain: DomainID?
  }

  /// The domain requests from `bdf` with `pasid` go through, resolved once so a burst of requests
  /// (a copy engine's transfer) pays the device, group and PASID lookups once. Exactly the rules of
  /// ``translate(device:pasid:iova:access:)``, which uses it.
  public func translator(device bdf: BDF, pasid: PASID?) -> Result<Translator, TranslatorRefusal> {
    let pasid = pasid == .noPASID ? nil : pasid
    guard let device = devicesByBDF[bdf], let group = groupsByID[device.group] else {
      return .failure(TranslatorRefusal(reason: .unknownDevice, domain: nil))
    }
    let domain: IOMMUDomain
    if let pasid {
      guard pasid.rawValue < device.description.maxPASID, let attachment = group.pasids[pasid] else {
        return .failure(TranslatorRefusal(reason: .unknownPASID, domain: nil))
      }
      domain = attachment.domain
    } else {
      domain = group.domain
    }
    if domain.type == .blocked { return .failure(TranslatorRefusal(reason: .blocked, domain: domain.id)) }
    if domain.type == .sva, domain.addressSpace?.isAlive != true {
      return .failure(TranslatorRefusal(reason: .addressSpaceExited, domain: domain.id))
    }
    return .success(Translator(core: self, device: bdf, pasid: pasid, domain: domain))
  }

  /// Translations through one resolved domain: the IOTLB first (tagged by domain and PASID), a miss
  /// walks the domain and fills it; failures go to the core's fault queue.
  public struct Translator {
    let core: IOMMUCore
    let device: BDF
    let pasid: PASID?
    let domain: IOMMUDomain

    public func translate(_ iova: IOVA, access: IOAccess) -> Result<IOTranslation, IOFault> {
      func fault(_ reason: IOFaultReason) -> Result<IOTranslation, IOFault> {
        let record = IOFault(
          device: device, pasid: pasid, address: iova, access: access, reason: reason, domain: domain.id)
        core.faultQueue.report(record)
        return .failure(record)
      }
      // Only translated domains are cached: identity and blocked need no walk.
      let tag = pasid ?? .noPASID
      let cacheable = domain.type.isPaging || domain.type == .sva
      let translation: IOTranslation
      if cacheable, let cached = core.iotlb.lookup(domain: domain.id, pasid: tag, iova: iova) {
        translation = cached
      } else {
        guard let walked = domain.lookup(iova) else { return fault(.notMapped) }
        if cacheable { core.iotlb.insert(domain: domain.id, pasid: tag, iova: iova, translation: walked) }
        translation = walked
      }
      guard translation.protection.contains(access.requiredProtection) else { return fault(.permission) }
      return .success(translation)
    }
  }

  /// Removes and returns the recorded faults, oldest first. Dropped faults stay counted in
  /// ``faultQueue``'s `overflowCount`.
  public func drainFaults() -> [IOFault] { faultQueue.drain() }

  /// Faults dropped because the queue was full.
  public var faultOverflowCount: Int { faultQueue.overflowCount }
}
