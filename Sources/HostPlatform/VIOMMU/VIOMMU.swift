public import GuestABI
public import IOMMU
public import PCIe

/// Which requests an attachment serves: a requester ID alone (requests without a PASID) or one PASID
/// of it.
public struct VIOMMUAttachmentKey: Hashable, Sendable, CustomStringConvertible {
  public var requester: RequesterID
  public var pasid: PASID?
  public init(requester: RequesterID, pasid: PASID?) {
    self.requester = requester
    self.pasid = pasid
  }
  public var description: String { "\(requester)" + (pasid.map { " \($0)" } ?? "") }
}

/// The paravirtual vIOMMU of one confidential guest: the guest attaches its devices (or their PASIDs)
/// to stage-1 tables it keeps in its own private memory, in the IOMMU core's format; the platform
/// walks them nested under its own stage 2 (issue 5; SEMANTICS.md §2, §5). The guest-visible interface
/// — commands, their descriptors, the registers and the command queue, the fault records — is
/// documented in Sources/HostPlatform/VIOMMU/README.md.
///
/// **Caching obeys the guest's invalidations exactly.** Every translation goes through the vIOMMU's
/// IOTLB, tagged (domain, PASID), which holds stage-1 results. An entry is removed by an invalidation
/// command that covers it — never because the guest wrote its tables — or by eviction when the cache is
/// full (after which the next access walks the tables again, as hardware may). A guest that changes a
/// mapping and does not invalidate keeps getting the old translation, as on hardware; tests rely on it.
/// Attach and detach take effect at once (they are the context-entry write together with its
/// context-cache invalidation), but neither touches the IOTLB: a domain's cached translations outlive
/// a detach until the guest invalidates them — also when the guest reuses the domain ID for another
/// table, which is why a guest invalidates a domain before reusing its ID (as VT-d requires).
///
/// **Stage 2 is never cached.** The output of every translation, cached or walked, goes through the
/// platform's ``GuestPhysicalMap`` on every access, so a page the platform converts or takes away stops
/// being reachable at once, whatever the guest did or did not invalidate. (Hardware caches nested
/// results and relies on the platform's own invalidations; the emulation gives the platform perfect
/// ones, which is the property the platform's invalidations exist to provide.)
///
/// Single-threaded, like the rest of the simulation core (STYLE.md rule 8).
public final class VIOMMU {
  /// Platform configuration (not guest-controlled).
  public struct Configuration: Sendable {
    /// Fault records held before the overflow flag is set (1…65535).
    public var faultQueueCapacity: Int
    /// Stage-1 translations the IOTLB holds before it evicts.
    public var iotlbCapacity: Int
    /// Attachments a guest may hold at once: a guest command cannot make the platform allocate
    /// without bound.
    public var maximumAttachments: Int

    public init(faultQueueCapacity: Int = 64, iotlbCapacity: Int = 512, maximumAttachments: Int = 4096) {
      self.faultQueueCapacity = faultQueueCapacity
      self.iotlbCapacity = iotlbCapacity
      self.maximumAttachments = maximumAttachments
    }
  }

  public let guest: GuestID
  public let configuration: Configuration
  let stage2Map: any GuestPhysicalMap
  let memory: any GuestMemoryReader

  /// Every attachment, by the requests it serves.
  public private(set) var attachments: [VIOMMUAttachmentKey: GuestIOTable] = [:]
  /// Per domain in use: its table and how many attachments use it. A domain ID names one table, so
  /// that the IOTLB, tagged by domain, never mixes two tables' translations.
  private var domainTables: [DomainID: (table: GuestIOTable, users: Int)] = [:]
  /// The translation cache (stage-1 results, tagged by domain and PASID).
  public let iotlb: IOTLB
  /// Faults waiting for the guest.
  public internal(set) var faultQueue: VIOMMUFaultQueue
  /// Stage-1 walks done (IOTLB misses that reached the guest's tables).
  public private(set) var stage1Walks = 0

  /// The command queue's register state (`VIOMMU+Registers.swift`).
  var commandQueue = CommandQueueState()

  /// - Precondition: the configuration's capacities are positive (platform configuration).
  public init(
    guest: GuestID, stage2: any GuestPhysicalMap, memory: any GuestMemoryReader,
    configuration: Configuration = Configuration()
  ) {
    precondition(configuration.iotlbCapacity >= 1 && configuration.maximumAttachments >= 1)
    self.guest = guest
    self.configuration = configuration
    self.stage2Map = stage2
    self.memory = memory
    self.iotlb = IOTLB(capacity: configuration.iotlbCapacity)
    self.faultQueue = VIOMMUFaultQueue(capacity: configuration.faultQueueCapacity)
  }

  // MARK: - Commands

  /// Executes one command, as the command queue does for each descriptor.
  ///
  /// - attach: EINVAL for PASID 0 (NO_PASID is "no PASID", not a PASID to attach; SEMANTICS.md §3), a
  ///   root that is not a 4 KiB page below 2^52, a width other than 39 or 48, or a domain ID already
  ///   naming another table; EBUSY when (requester, PASID) is attached elsewhere (re-attaching the same
  ///   table is a no-op, as in Linux); ENOSPC beyond `maximumAttachments`.
  /// - detach: EINVAL for PASID 0; ENOENT when not attached.
  /// - invalidateRange: EINVAL unless `iova` and `size` are 4 KiB aligned, `size` > 0 and the range
  ///   ends at or below 2^64; PASID 0 is EINVAL.
  /// - invalidatePASID: EINVAL for PASID 0. Invalidations of domains with nothing cached succeed.
  public func execute(_ command: VIOMMUCommand) throws(IOMMUError) {
    switch command {
    case .attach(let requester, let pasid, let domain, let root, let bits):
      try checkPASID(pasid)
      let table = try GuestIOTable(domain: domain, root: root, inputAddressBits: bits)
      try attach(VIOMMUAttachmentKey(requester: requester, pasid: pasid), to: table)
    case .detach(let requester, let pasid):
      try checkPASID(pasid)
      try detach(VIOMMUAttachmentKey(requester: requester, pasid: pasid))
    case .invalidateRange(let domain, let pasid, let iova, let size):
      try checkPASID(pasid)
      let (end, overflow) = iova.rawValue.addingReportingOverflow(size)
      guard size > 0, iova.rawValue % 4096 == 0, size % 4096 == 0, !overflow || end == 0 else {
        throw IOMMUError(.EINVAL, "invalidation range \(iova) + 0x\(String(size, radix: 16))")
      }
      // Nothing at or above 2^48 is ever cached (the widest table is 48 bits), so the range is clipped
      // there; the clip also keeps a range that ends at 2^64 representable.
      let limit: UInt64 = 1 << 48
      guard iova.rawValue < limit else { return }
      let upper = overflow || end > limit ? limit : end
      iotlb.invalidate(domain: domain, pasid: pasid, range: iova..<IOVA(upper))
    case .invalidatePASID(let domain, let pasid):
      try checkPASID(pasid)
      iotlb.invalidate(domain: domain, pasid: pasid)
    case .invalidateDomain(let domain):
      iotlb.invalidate(domain: domain)
    case .invalidateAll:
      iotlb.invalidateAll()
    }
  }

  private func checkPASID(_ pasid: PASID?) throws(IOMMUError) {
    guard let pasid else { return }
    guard pasid != .noPASID, pasid.rawValue < PASID.limit else {
      throw IOMMUError(.EINVAL, "\(pasid) is not a PASID a device can be attached with")
    }
  }

  private func attach(_ key: VIOMMUAttachmentKey, to table: GuestIOTable) throws(IOMMUError) {
    if let current = attachments[key] {
      guard current == table else { throw IOMMUError(.EBUSY, "\(key) is attached to \(current)") }
      return
    }
    if let existing = domainTables[table.domain], existing.table != table {
      throw IOMMUError(.EINVAL, "\(table.domain) already names \(existing.table)")
    }
    guard attachments.count < configuration.maximumAttachments else {
      throw IOMMUError(.ENOSPC, "\(configuration.maximumAttachments) attachments already")
    }
    attachments[key] = table
    domainTables[table.domain, default: (table, 0)].users += 1
  }

  private func detach(_ key: VIOMMUAttachmentKey) throws(IOMMUError) {
    guard let table = attachments.removeValue(forKey: key) else {
      throw IOMMUError(.ENOENT, "\(key) is not attached")
    }
    if let entry = domainTables[table.domain], entry.users > 1 {
      domainTables[table.domain] = (entry.table, entry.users - 1)
    } else {
      domainTables[table.domain] = nil
    }
  }

  // MARK: - Translation

  /// Translates one DMA request of the guest's device: the attachment of (requester, PASID), the IOTLB,
  /// on a miss the nested stage-1 walk (whose result is then cached), the permission check, and the
  /// platform's stage 2 of the output. A fault is returned and recorded in the fault queue.
  ///
  /// A PASID is 20 bits on the wire; a request claiming more matches no attachment and is recorded
  /// with the PASID's low 20 bits, as the record's field holds them.
  public func translate(requester: RequesterID, pasid: PASID?, iova: IOVA, access: IOAccess)
    -> Result<NestedTranslation, VIOMMUFault>
  {
    let key = VIOMMUAttachmentKey(requester: requester, pasid: pasid)
    guard let table = attachments[key] else {
      return record(
        .noAttachment, requester: requester, pasid: pasid, access: access, domain: nil, iova: iova)
    }
    let tagPASID = pasid ?? .noPASID
    let stage1: IOTranslation
    if let cached = iotlb.lookup(domain: table.domain, pasid: tagPASID, iova: iova) {
      stage1 = cached
    } else {
      stage1Walks += 1
      switch NestedWalk.stage1(iova, table: table, guest: guest, stage2: stage2Map, memory: memory) {
      case .success(let translation):
        iotlb.insert(domain: table.domain, pasid: tagPASID, iova: iova, translation: translation)
        stage1 = translation
      case .failure(let fault):
        return record(
          fault, requester: requester, pasid: pasid, access: access, domain: table.domain, iova: iova)
      }
    }
    let result = NestedWalk.stage2(stage1, access: access, guest: guest, stage2: stage2Map)
    if case .failure(let fault) = result {
      return record(
        fault, requester: requester, pasid: pasid, access: access, domain: table.domain, iova: iova)
    }
    return result
  }

  private func record(
    _ fault: VIOMMUFault, requester: RequesterID, pasid: PASID?, access: IOAccess, domain: DomainID?,
    iova: IOVA
  ) -> Result<NestedTranslation, VIOMMUFault> {
    let recordedPASID = pasid.map { PASID($0.rawValue & (PASID.limit - 1)) }
    faultQueue.report(
      VIOMMUFaultRecord(
        fault, requester: requester, pasid: recordedPASID, access: access, domain: domain, iova: iova))
    return .failure(fault)
  }

  // MARK: - Fault queue (typed access; the registers in `VIOMMU+Registers.swift` give the same)

  /// Removes and returns every pending fault record, oldest first.
  public func drainFaults() -> [VIOMMUFaultRecord] { faultQueue.drain() }

  /// Clears the overflow flag so new faults are recorded again.
  public func clearFaultOverflow() { faultQueue.clearOverflow() }
}
