public import PCIe

/// DMA ownership: kernel drivers versus a user, exclusive per group (SEMANTICS.md §1; Linux
/// iommu_device_use_default_domain, iommu_device_claim_dma_owner and friends).
extension IOMMUCore {
  /// Who owns the group's DMA.
  public func ownership(of group: GroupID) throws(IOMMUError) -> DMAOwnership {
    let group = try groupState(group)
    if group.ownerCount == 0 { return .unowned }
    if let owner = group.owner { return .user(owner, users: group.ownerCount) }
    return .kernel(users: group.ownerCount)
  }

  /// A kernel driver using the DMA API is being probed (iommu_device_use_default_domain).
  ///
  /// EBUSY if the group is owned by a user, its current domain is not the default one, or a PASID is
  /// attached; otherwise the owner count goes up by one. ENODEV for an unknown device.
  ///
  /// SEMANTICS.md §1 states the three checks unconditionally; Linux makes them only when the owner
  /// count is already non-zero. The difference shows only for a driver-less group whose domain was
  /// changed by someone who took no ownership, and Cove refuses that as well.
  public func deviceUseDefaultDomain(_ bdf: BDF) throws(IOMMUError) {
    let device = try device(bdf)
    let group = groupsByID[device.group]!
    if let owner = group.owner {
      throw IOMMUError(.EBUSY, "\(group.id) is owned by user \(owner)")
    }
    guard group.domain === group.defaultDomain else {
      throw IOMMUError(.EBUSY, "\(group.id) is attached to \(group.domain), not its default domain")
    }
    guard group.pasids.isEmpty else {
      throw IOMMUError(.EBUSY, "\(group.id) has \(group.pasids.count) PASID(s) attached")
    }
    group.ownerCount += 1
    device.kernelUses += 1
  }

  /// A kernel driver is removed (iommu_device_unuse_default_domain). EINVAL if this device holds no
  /// kernel use (Linux WARNs); EBUSY while PASIDs are attached (Linux WARNs and keeps the count).
  public func deviceUnuseDefaultDomain(_ bdf: BDF) throws(IOMMUError) {
    let device = try device(bdf)
    let group = groupsByID[device.group]!
    guard device.kernelUses > 0, group.ownerCount > 0, group.owner == nil else {
      throw IOMMUError(.EINVAL, "\(bdf) holds no kernel DMA ownership")
    }
    guard group.pasids.isEmpty else {
      throw IOMMUError(.EBUSY, "\(group.id) still has PASIDs attached")
    }
    group.ownerCount -= 1
    device.kernelUses -= 1
  }

  /// Binds a kernel driver to a device (the driver core's really_probe): a `.dmaAPI` driver goes
  /// through ``deviceUseDefaultDomain(_:)``; `.driverManagedDMA` and `.noDMA` drivers skip it (the
  /// latter is driver-less for ownership, so compatible with a user owner). EBUSY if a driver is
  /// already bound (the driver core's own rule) or the default-domain check fails.
  public func bindDriver(_ bdf: BDF, dma: DriverDMA) throws(IOMMUError) {
    let device = try device(bdf)
    guard device.driver == nil else { throw IOMMUError(.EBUSY, "\(bdf) already has a driver bound") }
    if dma == .dmaAPI { try deviceUseDefaultDomain(bdf) }
    device.driver = dma
  }

  /// Unbinds the device's driver; a `.dmaAPI` driver gives its ownership back. EINVAL if none bound.
  public func unbindDriver(_ bdf: BDF) throws(IOMMUError) {
    let device = try device(bdf)
    guard let driver = device.driver else { throw IOMMUError(.EINVAL, "\(bdf) has no driver bound") }
    if driver == .dmaAPI { try deviceUnuseDefaultDomain(bdf) }
    device.driver = nil
  }

  /// The driver bound to a device, if any.
  public func boundDriver(_ bdf: BDF) -> DriverDMA? { devicesByBDF[bdf]?.driver }

  /// A user takes a device's DMA (iommu_device_claim_dma_owner), tracked per group.
  ///
  /// - EINVAL without a cookie.
  /// - If the group already has owners: the same cookie shares it (count + 1); a different cookie,
  ///   or kernel users (no cookie), → EPERM.
  /// - Otherwise ownership is taken (__iommu_take_dma_ownership): EBUSY if the current domain is not
  ///   the default one or PASIDs are attached; the blocking domain is attached, which a device that
  ///   requires identity refuses (EINVAL, __iommu_device_set_domain: such a device can never be
  ///   user-owned).
  public func claimDMAOwner(device bdf: BDF, cookie: OwnerCookie?) throws(IOMMUError) {
    let device = try device(bdf)
    guard let cookie else { throw IOMMUError(.EINVAL, "claiming \(bdf) for a user needs an owner cookie") }
    let group = groupsByID[device.group]!
    if group.ownerCount > 0 {
      guard group.owner == cookie else {
        let holder = group.owner.map { "user \($0)" } ?? "kernel drivers"
        throw IOMMUError(.EPERM, "\(group.id) is owned by \(holder)")
      }
      group.ownerCount += 1
      device.userClaims += 1
      return
    }
    try takeOwnership(group, cookie)
    device.userClaims += 1
  }

  /// Gives back one user claim on a device (iommu_device_release_dma_owner). At count 1 the group's
  /// ownership ends and the default domain is restored, whatever domain the user had attached.
  /// EINVAL if this device holds no user claim; EBUSY if ending ownership while PASIDs are still
  /// attached (Linux WARNs and keeps the ownership).
  public func releaseDMAOwner(device bdf: BDF) throws(IOMMUError) {
    let device = try device(bdf)
    let group = groupsByID[device.group]!
    guard device.userClaims > 0, group.owner != nil, group.ownerCount > 0 else {
      throw IOMMUError(.EINVAL, "\(bdf) holds no user DMA ownership")
    }
    if group.ownerCount > 1 {
      group.ownerCount -= 1
    } else {
      try releaseOwnership(group)
    }
    device.userClaims -= 1
  }

  /// A user takes a whole group (iommu_group_claim_dma_owner, the VFIO group path). EINVAL without a
  /// cookie; EPERM if the group has any owner at all, even the same cookie (unlike the per-device
  /// claim); then as ``claimDMAOwner(device:cookie:)``.
  public func claimGroupDMAOwner(_ id: GroupID, cookie: OwnerCookie?) throws(IOMMUError) {
    let group = try groupState(id)
    guard let cookie else { throw IOMMUError(.EINVAL, "claiming \(id) for a user needs an owner cookie") }
    guard group.ownerCount == 0 else { throw IOMMUError(.EPERM, "\(id) already has an owner") }
    try takeOwnership(group, cookie)
  }

  /// Ends a user's ownership of a whole group (iommu_group_release_dma_owner): the count drops to
  /// zero, per-device claims included, and the default domain is restored. EINVAL if not user-owned;
  /// EBUSY while PASIDs are attached.
  public func releaseGroupDMAOwner(_ id: GroupID) throws(IOMMUError) {
    let group = try groupState(id)
    guard group.owner != nil else { throw IOMMUError(.EINVAL, "\(id) is not owned by a user") }
    try releaseOwnership(group)
    for bdf in group.devices { devicesByBDF[bdf]!.userClaims = 0 }
  }

  private func takeOwnership(_ group: GroupState, _ cookie: OwnerCookie) throws(IOMMUError) {
    guard group.domain === group.defaultDomain else {
      throw IOMMUError(.EBUSY, "\(group.id) is attached to \(group.domain), not its default domain")
    }
    guard group.pasids.isEmpty else {
      throw IOMMUError(.EBUSY, "\(group.id) has \(group.pasids.count) PASID(s) attached")
    }
    try setGroupDomain(group, blockingDomain(of: group))
    group.owner = cookie
    group.ownerCount = 1
  }

  private func releaseOwnership(_ group: GroupState) throws(IOMMUError) {
    guard group.pasids.isEmpty else {
      throw IOMMUError(.EBUSY, "\(group.id) still has PASIDs attached")
    }
    group.owner = nil
    group.ownerCount = 0
    group.domain = group.defaultDomain
  }
}
