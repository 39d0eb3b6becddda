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
    switch translator(device: bdf, pasid: pasid, burst: false) {
    case .success(var translator): return translator.translate(iova, access: access)
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
  /// `burst`: the translator may keep the last level-1 table it walked to (see ``Translator``); a
  /// single request gains nothing from it and goes through the IOTLB alone.
  public func translator(device bdf: BDF, pasid: PASID?, burst: Bool = true) -> Result<
    Translator, TranslatorRefusal
  > {
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
    return .success(Translator(core: self, device: bdf, pasid: pasid, domain: domain, burst: burst))
  }

  /// Translations through one resolved domain: the IOTLB first (tagged by domain and PASID), a miss
  /// walks the domain and fills it; failures go to the core's fault queue.
  ///
  /// For a burst of sequential requests the translator also keeps, like VT-d's paging-structure
  /// caches, the last level-1 table it walked to, and reads the next 4 KiB leaf straight from it.
  /// It does so only for strict domains (paging, DMA): their unmaps invalidate the IOTLB before
  /// returning, so table and IOTLB never disagree and the answer is the one the IOTLB would give.
  /// A translator kept past a map or unmap stays correct: the cached table is dropped as soon as the
  /// table's structure changes (``RadixIOPageTable/structureGeneration``), and leaf entries are read
  /// fresh on every request. Burst reads do not fill or count in the IOTLB.
  public struct Translator {
    let core: IOMMUCore
    let device: BDF
    let pasid: PASID?
    let domain: IOMMUDomain
    /// The domain's table when the shortcut applies.
    let sequential: RadixIOPageTable?
    /// The level-1 table covering `region` (a 2 MiB-aligned IOVA) and the rights of the entries above it.
    var leafTable: (region: UInt64, base: UInt64, rights: IOProtection, generation: UInt64)?

    init(core: IOMMUCore, device: BDF, pasid: PASID?, domain: IOMMUDomain, burst: Bool) {
      self.core = core
      self.device = device
      self.pasid = pasid
      self.domain = domain
      sequential =
        burst && (domain.type == .paging || domain.type == .dma) ? domain.pageTable as? RadixIOPageTable : nil
    }

    public mutating func translate(_ iova: IOVA, access: IOAccess) -> Result<IOTranslation, IOFault> {
      if let table = sequential, let translation = leaf(iova, in: table) {
        guard translation.protection.contains(access.requiredProtection) else {
          return fault(.permission, iova, access)
        }
        return .success(translation)
      }
      // Only translated domains are cached: identity and blocked need no walk.
      let tag = pasid ?? .noPASID
      let cacheable = domain.type.isPaging || domain.type == .sva
      let translation: IOTranslation
      if cacheable, let cached = core.iotlb.lookup(domain: domain.id, pasid: tag, iova: iova) {
        translation = cached
      } else {
        guard let walked = domain.lookup(iova) else { return fault(.notMapped, iova, access) }
        if cacheable { core.iotlb.insert(domain: domain.id, pasid: tag, iova: iova, translation: walked) }
        translation = walked
      }
      guard translation.protection.contains(access.requiredProtection) else {
        return fault(.permission, iova, access)
      }
      return .success(translation)
    }

    private func fault(_ reason: IOFaultReason, _ iova: IOVA, _ access: IOAccess) -> Result<
      IOTranslation, IOFault
    > {
      let record = IOFault(
        device: device, pasid: pasid, address: iova, access: access, reason: reason, domain: domain.id)
      core.faultQueue.report(record)
      return .failure(record)
    }

    /// The 4 KiB leaf for `iova` from the cached level-1 table, or nil to take the normal path (no
    /// such table for the region, a large page, a hole, a malformed entry).
    private mutating func leaf(_ iova: IOVA, in table: RadixIOPageTable) -> IOTranslation? {
      let region = iova.rawValue & ~UInt64(0x1F_FFFF)
      if leafTable?.region != region || leafTable?.generation != table.structureGeneration {
        leafTable = nil
        let walk = table.walk(iova)
        guard case .translated(let found) = walk.outcome, found.pageSize == .size4K,
          walk.steps.count == table.levels, let last = walk.steps.last
        else { return nil }
        var rights = IOProtection.readWrite
        for step in walk.steps.dropLast() { rights.formIntersection(step.entry.protection) }
        leafTable = (
          region, last.entryAddress.rawValue & ~UInt64(0xFFF), rights.intersection(.readWrite),
          table.structureGeneration
        )
      }
      guard let cache = leafTable else { return nil }
      let entry = RadixPageTableEntry(
        rawValue: table.memory.loadEntry(PhysicalAddress(cache.base + (iova.rawValue >> 12 & 511) * 8)))
      guard entry.isPresent, !entry.hasReservedBits(atLevel: 1) else { return nil }
      let rights = entry.protection.intersection(cache.rights).union(entry.protection.intersection(.shared))
      return IOTranslation(
        physical: PhysicalAddress(entry.address.rawValue | iova.rawValue & 0xFFF), protection: rights,
        pageSize: .size4K)
    }
  }

  /// Removes and returns the recorded faults, oldest first. Dropped faults stay counted in
  /// ``faultQueue``'s `overflowCount`.
  public func drainFaults() -> [IOFault] { faultQueue.drain() }

  /// Faults dropped because the queue was full.
  public var faultOverflowCount: Int { faultQueue.overflowCount }
}
