public import PCIe

/// A process address space bound to a group's devices under one PASID (Linux struct iommu_sva).
/// Binding the same device (or group) and process again returns this same object with one more
/// reference; each bind needs its own unbind.
public final class SVABond: CustomStringConvertible {
  public let group: GroupID
  public let pasid: PASID
  public let addressSpace: ProcessAddressSpace
  public let domain: IOMMUDomain
  /// Binds not yet undone; 0 once fully unbound.
  public internal(set) var references = 1

  init(group: GroupID, pasid: PASID, addressSpace: ProcessAddressSpace, domain: IOMMUDomain) {
    self.group = group
    self.pasid = pasid
    self.addressSpace = addressSpace
    self.domain = domain
  }

  public var isBound: Bool { references > 0 }
  public var description: String { "bond \(addressSpace.id) \(pasid) on \(group) ×\(references)" }
}

/// A process known to the core: its PASID, its SVA domain and its bonds per group.
final class BoundAddressSpace {
  let space: ProcessAddressSpace
  let pasid: PASID
  let domain: IOMMUDomain
  var bonds: [GroupID: SVABond] = [:]

  init(space: ProcessAddressSpace, pasid: PASID, domain: IOMMUDomain) {
    self.space = space
    self.pasid = pasid
    self.domain = domain
  }
}

/// Shared virtual addressing (SEMANTICS.md §4; Linux iommu_sva_bind_device, iommu_sva_unbind_device,
/// iommu_sva_iopf_handler).
extension IOMMUCore {
  /// Binds a process to a device (iommu_sva_bind_device).
  ///
  /// - EINVAL if the device shares its group with other devices: binding one of them alone would
  ///   open a back door to the others, so the group must be bound as a whole with
  ///   ``svaBindGroup(_:addressSpace:)`` (the seed thread's bind_device rule; Cove uses the errno
  ///   iommu_attach_device gives the same situation). EINVAL also for an exited process.
  /// - Then as the group bind: one PASID per process from the global allocator (ENOSPC); EOVERFLOW if
  ///   the process's PASID is ≥ the device's max; the same (device, process) returns the same bond
  ///   with one more reference; the PASID attached to anything else on the device → EBUSY; PASID
  ///   attach rules (no ACS on the path → EINVAL).
  public func svaBind(device bdf: BDF, addressSpace: ProcessAddressSpace) throws(IOMMUError) -> SVABond {
    let group = try groupState(of: bdf)
    guard group.devices.count == 1 else {
      throw IOMMUError(
        .EINVAL, "\(bdf) shares \(group.id) with other devices; bind the whole group")
    }
    return try bind(group, addressSpace)
  }

  /// Binds a process to every device of a group under one PASID (the seed thread's bind_group, for
  /// users such as VFIO that know about groups). A device hotplugged into the group later gets the
  /// bond too. Errors as ``svaBind(device:addressSpace:)``, checked against every device.
  public func svaBindGroup(_ id: GroupID, addressSpace: ProcessAddressSpace) throws(IOMMUError) -> SVABond {
    try bind(groupState(id), addressSpace)
  }

  /// Drops one reference of a bond (iommu_sva_unbind_device). At zero the PASID is detached from the
  /// group; when no bond of the process is left its PASID returns to the global allocator (Cove
  /// follows the brief here; modern Linux keeps mm->pasid until the mm is freed, mm_pasid_drop).
  /// EINVAL if the bond is already fully unbound or not this core's.
  public func svaUnbind(_ bond: SVABond) throws(IOMMUError) {
    guard bond.isBound, let bound = addressSpaces[bond.addressSpace.id], bound.bonds[bond.group] === bond
    else { throw IOMMUError(.EINVAL, "\(bond) is not bound") }
    bond.references -= 1
    guard bond.references == 0 else { return }
    if let domain = groupsByID[bond.group]?.pasids[bond.pasid]?.domain {
      iotlb.invalidate(domain: domain.id, pasid: bond.pasid)
    }
    groupsByID[bond.group]?.pasids[bond.pasid] = nil
    bound.bonds[bond.group] = nil
    if bound.bonds.isEmpty {
      bound.space.removeObserver(ObjectIdentifier(self))
      addressSpaces[bound.space.id] = nil
      try? pasidAllocator.free(bound.pasid)
    }
  }

  /// The PASID the core gave a process, while it has bonds.
  public func pasid(of addressSpace: ProcessAddressSpace) -> PASID? {
    addressSpaces[addressSpace.id].flatMap { $0.space === addressSpace ? $0.pasid : nil }
  }

  /// An IO page fault: a device asks for a page through PRI (iommu_report_device_fault →
  /// iommu_sva_iopf_handler → iommu_sva_handle_mm). Success needs a PASID attached to an SVA domain
  /// on the device, a live process, and a mapping with the right the access needs — present already
  /// or made by the process's ``ProcessAddressSpace/pageFaultHandler``. Anything else is INVALID
  /// (SEMANTICS.md §4). Never throws: a page request is device input.
  public func handlePageRequest(device bdf: BDF, pasid: PASID?, address: IOVA, access: IOAccess)
    -> PageResponse
  {
    guard let device = devicesByBDF[bdf], let pasid, pasid != .noPASID,
      pasid.rawValue < device.description.maxPASID,
      let attachment = groupsByID[device.group]?.pasids[pasid], attachment.domain.type == .sva,
      let space = attachment.domain.addressSpace, space.isAlive
    else { return .invalid }
    let virtual = VirtualAddress(address.rawValue)
    func permitted() -> Bool {
      guard let entry = space.lookup(virtual) else { return false }
      return access == .read || entry.writable
    }
    if permitted() { return .success }
    guard let handler = space.pageFaultHandler else { return .invalid }
    handler(space, virtual, access)
    return space.isAlive && permitted() ? .success : .invalid
  }

  /// Removes and returns the IOTLB invalidations logged so far.
  public func drainIOTLBInvalidations() -> [IOTLBInvalidation] {
    defer { iotlbInvalidations.removeAll() }
    return iotlbInvalidations
  }

  // MARK: Internal

  private func bind(_ group: GroupState, _ space: ProcessAddressSpace) throws(IOMMUError) -> SVABond {
    guard space.isAlive else { throw IOMMUError(.EINVAL, "\(space.id) has exited") }
    let groupMax = descriptions(of: group).map(\.maxPASID).min() ?? 0
    let existing = addressSpaces[space.id]
    if let existing, existing.space !== space {
      throw IOMMUError(.EINVAL, "another address space object already uses \(space.id)")
    }
    let bound: BoundAddressSpace
    if let existing {
      // iommu_alloc_mm_data: the process keeps its one PASID; it must fit this device.
      guard existing.pasid.rawValue < groupMax else {
        throw IOMMUError(
          .EOVERFLOW, "\(space.id)'s \(existing.pasid) ≥ max PASID \(groupMax) of \(group.id)")
      }
      bound = existing
    } else {
      let pasid = try pasidAllocator.allocate(below: groupMax)
      let domain = try makeDomain(.sva, addressSpace: space)
      bound = BoundAddressSpace(space: space, pasid: pasid, domain: domain)
    }

    if let attachment = group.pasids[bound.pasid], let bond = attachment.bond,
      bond.addressSpace === space
    {
      bond.references += 1
      return bond
    }
    let bond = SVABond(group: group.id, pasid: bound.pasid, addressSpace: space, domain: bound.domain)
    do throws(IOMMUError) {
      if let attachment = group.pasids[bound.pasid] {
        throw IOMMUError(.EBUSY, "\(bound.pasid) of \(group.id) is in use by \(attachment.domain)")
      }
      try attachPASID(bound.domain, group, bound.pasid, bond: bond)
    } catch {
      if existing == nil { try? pasidAllocator.free(bound.pasid) }
      throw error
    }
    bound.bonds[group.id] = bond
    if existing == nil {
      addressSpaces[space.id] = bound
      space.addObserver(ObjectIdentifier(self)) { [weak self] space, event in
        self?.addressSpaceChanged(space, event)
      }
    }
    return bond
  }

  /// The secondary-TLB notifier (mmu_notifier arch_invalidate_secondary_tlbs / release): every
  /// PASID bound to the process has its cached translations invalidated.
  private func addressSpaceChanged(_ space: ProcessAddressSpace, _ event: AddressSpaceEvent) {
    guard let bound = addressSpaces[space.id], bound.space === space else { return }
    let scope: IOTLBInvalidation.Scope
    switch event {
    case .invalidated(let start, let size): scope = .range(start: start, size: size)
    case .exited: scope = .all
    }
    for bond in bound.bonds.values.sorted(by: { $0.group.rawValue < $1.group.rawValue }) {
      let invalidation = IOTLBInvalidation(
        domain: bound.domain.id, group: bond.group, pasid: bond.pasid, scope: scope)
      switch scope {
      case .range(let start, let size):
        iotlb.invalidate(
          domain: bound.domain.id, pasid: bond.pasid,
          range: IOVA(start.rawValue)..<IOVA(start.rawValue &+ size))
      case .all:
        iotlb.invalidate(domain: bound.domain.id, pasid: bond.pasid)
      }
      iotlbInvalidations.append(invalidation)
      if iotlbInvalidations.count > Self.invalidationLogLimit { iotlbInvalidations.removeFirst() }
      iotlbInvalidationHook?(invalidation)
    }
  }
}
