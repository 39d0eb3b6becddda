public import IOMMU

/// User-owned devices (a VFIO-like owner, SEMANTICS.md §1), on the guest IOMMU core's ownership
/// rules: claiming puts the group behind its blocking domain, which the vIOMMU sees as a detach.
extension GuestKernel {
  /// iommu_device_claim_dma_owner. ENODEV without a vIOMMU (no IOMMU group to own); otherwise the
  /// core's errno: EINVAL without a cookie, EPERM for a kernel driver or another owner, EBUSY when
  /// the group's domain is not its default one.
  public func claimDMAOwner(_ device: PCIDevice, cookie: OwnerCookie?) throws(KernelError) {
    guard let iommu else { throw KernelError(.ENODEV, "\(device): no IOMMU, no group to own") }
    do { try iommu.core.claimDMAOwner(device: device.bdf, cookie: cookie) } catch {
      throw KernelError(error.errno, "claim \(device): \(error)")
    }
    device.userOwner = cookie
    do throws(KernelError) { try iommu.syncAttachments(of: device.bdf) } catch {
      // The vIOMMU did not take the blocking domain: give the claim back so nothing disagrees.
      try? iommu.core.releaseDMAOwner(device: device.bdf)
      device.userOwner = nil
      try? iommu.syncAttachments(of: device.bdf)
      throw error
    }
  }

  /// iommu_device_release_dma_owner: the last release gives the group its default domain back.
  public func releaseDMAOwner(_ device: PCIDevice) throws(KernelError) {
    guard let iommu else { throw KernelError(.ENODEV, "\(device): no IOMMU, no group to own") }
    do { try iommu.core.releaseDMAOwner(device: device.bdf) } catch {
      throw KernelError(error.errno, "release \(device): \(error)")
    }
    device.userOwner = nil
    try iommu.syncAttachments(of: device.bdf)
    // Trust may have changed while the user held it.
    reprobe(device)
  }
}
