public import PCIe

/// Domains and their attachment to groups (SEMANTICS.md §2; Linux iommu_attach_device,
/// iommu_attach_group, __iommu_group_set_domain).
extension IOMMUCore {
  /// Allocates a domain (iommu_paging_domain_alloc, iommu_sva_domain_alloc, domain_alloc_nested; the
  /// static blocked/identity domains). Paging-capable types get a page table from the factory.
  ///
  /// - `.nested` needs `parent`, a `.paging` domain of this core (the stage 2): EINVAL otherwise
  ///   (iommufd requires a paging NEST_PARENT). `parent` on any other type → EINVAL.
  /// - `.sva` needs a live `addressSpace` (EINVAL otherwise); `addressSpace` on any other type →
  ///   EINVAL. Binding through ``svaBind(device:addressSpace:)`` shares one SVA domain per process.
  public func allocateDomain(
    _ type: DomainType, parent: IOMMUDomain? = nil, addressSpace: ProcessAddressSpace? = nil
  ) throws(IOMMUError) -> IOMMUDomain {
    if type == .nested {
      guard let parent else { throw IOMMUError(.EINVAL, "a nested domain needs a stage-2 parent") }
      try checkOwned(parent)
      guard parent.type == .paging else {
        throw IOMMUError(.EINVAL, "nested parent \(parent) is not a paging domain")
      }
    } else if parent != nil {
      throw IOMMUError(.EINVAL, "only a nested domain has a parent")
    }
    if type == .sva {
      guard let addressSpace, addressSpace.isAlive else {
        throw IOMMUError(.EINVAL, "an SVA domain needs a live process address space")
      }
    } else if addressSpace != nil {
      throw IOMMUError(.EINVAL, "only an SVA domain has a process address space")
    }
    return try makeDomain(type, parent: parent, addressSpace: addressSpace)
  }

  /// The domain the group's requests without PASID go through (group->domain).
  public func currentDomain(of group: GroupID) throws(IOMMUError) -> IOMMUDomain {
    try groupState(group).domain
  }

  /// The group's default domain (group->default_domain), chosen when the group was created.
  public func defaultDomain(of group: GroupID) throws(IOMMUError) -> IOMMUDomain {
    try groupState(group).defaultDomain
  }

  /// The group's blocking domain (group->blocking_domain), allocated on first use.
  public func blockingDomain(of group: GroupID) throws(IOMMUError) -> IOMMUDomain {
    try blockingDomain(of: groupState(group))
  }

  /// Attaches a domain to a device's group (iommu_attach_device). EINVAL unless the group has exactly
  /// one device (a driver oblivious of groups must not open a back door to the others); then as
  /// ``attachGroup(_:to:)``. ENODEV for an unknown device.
  public func attachDevice(_ domain: IOMMUDomain, to bdf: BDF) throws(IOMMUError) {
    let group = try groupState(of: bdf)
    guard group.devices.count == 1 else {
      throw IOMMUError(
        .EINVAL, "\(bdf) shares \(group.id) with \(group.devices.count - 1) other device(s)")
    }
    try attach(domain, group)
  }

  /// Attaches a domain to a whole group (iommu_attach_group → __iommu_attach_group). EBUSY unless the
  /// current domain is the default or blocking one (re-attaching the attached domain is EBUSY too);
  /// EINVAL for a domain of another core; then ``replaceGroupDomain(_:with:)``'s rules.
  public func attachGroup(_ domain: IOMMUDomain, to id: GroupID) throws(IOMMUError) {
    try attach(domain, groupState(id))
  }

  /// Detaches a domain from a device's group (iommu_detach_device): the group returns to its core
  /// domain — blocking if a user owns it, default otherwise (__iommu_group_set_core_domain). EINVAL if
  /// `domain` is not the attached one or the group has more than one device (Linux WARNs).
  public func detachDevice(_ domain: IOMMUDomain, from bdf: BDF) throws(IOMMUError) {
    let group = try groupState(of: bdf)
    guard group.devices.count == 1 else {
      throw IOMMUError(.EINVAL, "\(bdf) shares \(group.id) with other devices")
    }
    try detach(domain, group)
  }

  /// Detaches a domain from a group (iommu_detach_group), as ``detachDevice(_:from:)``. EINVAL if
  /// `domain` is not the attached one (Linux does not check; Cove refuses the caller bug).
  public func detachGroup(_ domain: IOMMUDomain, from id: GroupID) throws(IOMMUError) {
    try detach(domain, groupState(id))
  }

  /// Switches a group to `domain` without passing through a core domain
  /// (iommu_group_replace_domain → __iommu_group_set_domain; what iommufd uses on groups it owns).
  /// No EBUSY check: the caller owns the group. Replacing with the current domain is a no-op. EINVAL
  /// for another core's domain, or a blocked domain when a device requires identity; ENODEV for an
  /// SVA domain (it has no attach_dev: SVA attaches to PASIDs only). All-or-nothing.
  public func replaceGroupDomain(_ id: GroupID, with domain: IOMMUDomain) throws(IOMMUError) {
    let group = try groupState(id)
    try checkOwned(domain)
    try setGroupDomain(group, domain)
  }

  // MARK: Internal

  func checkOwned(_ domain: IOMMUDomain) throws(IOMMUError) {
    guard domain.owner == ObjectIdentifier(self) else {
      throw IOMMUError(.EINVAL, "\(domain) belongs to another IOMMU core")
    }
  }

  func blockingDomain(of group: GroupState) throws(IOMMUError) -> IOMMUDomain {
    if let blocking = group.blockingDomain { return blocking }
    let blocking = try makeDomain(.blocked)
    group.blockingDomain = blocking
    return blocking
  }

  /// __iommu_group_set_domain: every device of the group must accept the domain, or nothing changes.
  func setGroupDomain(_ group: GroupState, _ domain: IOMMUDomain) throws(IOMMUError) {
    if group.domain === domain { return }
    if domain.type == .sva {
      throw IOMMUError(.ENODEV, "\(domain) cannot be attached to a requester ID, only to a PASID")
    }
    if domain.type == .blocked {
      for description in descriptions(of: group) where description.requiresIdentity {
        throw IOMMUError(
          .EINVAL, "\(description.bdf) requires an identity mapping and cannot be blocked")
      }
    }
    group.domain = domain
  }

  private func attach(_ domain: IOMMUDomain, _ group: GroupState) throws(IOMMUError) {
    guard group.domain === group.defaultDomain || group.domain === group.blockingDomain else {
      throw IOMMUError(.EBUSY, "\(group.id) is already attached to \(group.domain)")
    }
    try checkOwned(domain)
    try setGroupDomain(group, domain)
  }

  private func detach(_ domain: IOMMUDomain, _ group: GroupState) throws(IOMMUError) {
    guard group.domain === domain else {
      throw IOMMUError(.EINVAL, "\(domain) is not attached to \(group.id)")
    }
    let core = group.owner != nil ? try blockingDomain(of: group) : group.defaultDomain
    try setGroupDomain(group, core)
  }
}
