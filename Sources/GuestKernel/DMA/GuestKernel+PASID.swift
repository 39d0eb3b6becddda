public import IOMMU
public import PCIe

/// How a driver's DMA with a PASID is translated (SEMANTICS.md §3, the 2021 "in-kernel DMA with
/// PASID" debate). `.iova` is what Linux settled on; the other three are the RFC's proposals, kept to
/// compare them and allowed only by the administrator, for devices the administrator trusts.
public enum PASIDMode: String, Hashable, Sendable, CaseIterable, CustomStringConvertible {
  /// The PASID is attached to the device's own DMA domain (Jason Gunthorpe's model): the driver keeps
  /// using the DMA API and IOVAs mean the same with or without the PASID.
  case iova
  /// Bypass / PA mode: DMA address = guest-physical address for all of memory, private included.
  case bypass
  /// Kernel virtual addresses: a domain mirroring the kernel's vmap space, every change invalidated
  /// at once.
  case kvaStrict
  /// Kernel virtual addresses without invalidation when kernel mappings go away, until a flush: the
  /// device may keep reaching memory the kernel has reused meanwhile.
  case kvaFast

  public var description: String { rawValue }
}

/// The administrator's policy for the RFC's PASID modes.
public struct PASIDPolicy: Hashable, Sendable {
  /// Whether the RFC's modes (bypass, KVA strict, KVA fast) may be used at all.
  public var allowRFCModes: Bool
  /// The devices the administrator trusts with them.
  public var trustedDevices: Set<RequesterID>
  public init(allowRFCModes: Bool = false, trustedDevices: Set<RequesterID> = []) {
    self.allowRFCModes = allowRFCModes
    self.trustedDevices = trustedDevices
  }
}

/// A PASID a driver enabled, with its mode and the domain behind it.
struct PASIDUse {
  var mode: PASIDMode
  var domain: IOMMUDomain?
}

/// A kernel virtual address from ``GuestKernel/vmap(_:pages:)``.
public struct KernelVirtualAddress: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible
{
  public var rawValue: UInt64
  public init(rawValue: UInt64) { self.rawValue = rawValue }
  public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
  public var description: String { "kva 0x" + String(rawValue, radix: 16) }
}

extension GuestKernel {
  /// Enables DMA with a PASID for the bound driver's device and returns the PASID to program into
  /// it. ENODEV without a vIOMMU; EOPNOTSUPP if the device has no PASID capability; EINVAL without a
  /// bound driver; EPERM for an RFC mode the administrator did not allow for this device; otherwise
  /// the IOMMU core's errno (ENOSPC when PASIDs run out, EINVAL without ACS on the path).
  public func enablePASID(_ device: PCIDevice, mode: PASIDMode = .iova) throws(KernelError) -> PASID {
    guard let iommu else { throw KernelError(.ENODEV, "\(device): PASIDs need an IOMMU") }
    guard device.maxPASID > 0 else { throw KernelError(.EOPNOTSUPP, "\(device) has no PASID capability") }
    guard device.driver != nil else { throw KernelError(.EINVAL, "\(device): no driver bound") }
    if mode != .iova {
      guard pasidPolicy.allowRFCModes, pasidPolicy.trustedDevices.contains(device.function) else {
        throw KernelError(.EPERM, "\(device): \(mode) mode needs the administrator's trust")
      }
    }
    let pasid: PASID
    var use = PASIDUse(mode: mode, domain: nil)
    do throws(IOMMUError) {
      switch mode {
      case .iova:
        pasid = try iommu.core.enableKernelDMAPASID(device.bdf)
      case .bypass, .kvaStrict, .kvaFast:
        let domain = mode == .bypass ? try bypassDomain() : try kvaDomain(strict: mode == .kvaStrict)
        pasid = try iommu.core.allocateGlobalPASID(for: device.bdf)
        do { try iommu.core.attachDevicePASID(domain, to: device.bdf, pasid: pasid) } catch {
          try? iommu.core.freeGlobalPASID(pasid)
          throw error
        }
        use.domain = domain
      }
    } catch { throw KernelError(error.errno, "\(device): \(mode) PASID: \(error)") }
    device.pasids[pasid] = use
    do throws(KernelError) { try iommu.syncAttachments(of: device.bdf) } catch {
      try? disablePASID(device, pasid)
      throw error
    }
    return pasid
  }

  /// Gives a PASID back (detached at the vIOMMU, freed). EINVAL if the device did not enable it.
  public func disablePASID(_ device: PCIDevice, _ pasid: PASID) throws(KernelError) {
    guard let iommu, let use = device.pasids[pasid] else {
      throw KernelError(.EINVAL, "\(device) has no PASID \(pasid) enabled")
    }
    do throws(IOMMUError) {
      if let domain = use.domain {
        try iommu.core.detachDevicePASID(domain, from: device.bdf, pasid: pasid)
        try iommu.core.freeGlobalPASID(pasid)
      } else {
        try iommu.core.disableKernelDMAPASID(device.bdf, pasid: pasid)
      }
    } catch { throw KernelError(error.errno, "\(device): \(error)") }
    // Forgotten only once the core has let go, so a refused release can be retried.
    device.pasids[pasid] = nil
    try iommu.syncAttachments(of: device.bdf)
  }

  // MARK: Kernel virtual mappings (what KVA mode translates)

  /// vmap: maps `pages` guest pages at `gpa` into the kernel's virtual space; the KVA domains follow.
  public func vmap(_ gpa: UInt64, pages: Int) throws(KernelError) -> KernelVirtualAddress {
    guard pages > 0, gpa % UInt64(GuestMemory.pageSize) == 0 else {
      throw KernelError(.EINVAL, "vmap of \(pages) pages at \(hex(gpa))")
    }
    let kva = nextKVA
    nextKVA += UInt64(pages * GuestMemory.pageSize)
    for index in 0..<pages {
      kvaPages[kva + UInt64(index * GuestMemory.pageSize)] = gpa + UInt64(index * GuestMemory.pageSize)
    }
    for domain in [kvaStrictDomain, kvaFastDomain].compactMap({ $0 }) {
      do throws(IOMMUError) {
        try domain.map(
          IOVA(kva), to: PhysicalAddress(gpa), size: UInt64(pages * GuestMemory.pageSize),
          protection: .readWrite)
      } catch { throw KernelError(error.errno, "vmap: \(error)") }
    }
    return KernelVirtualAddress(rawValue: kva)
  }

  /// vunmap: the KVA range goes away. The strict KVA domain invalidates at once; the fast one only
  /// drops the mapping from its table and leaves cached translations until ``flushKVA()``.
  public func vunmap(_ kva: KernelVirtualAddress, pages: Int) {
    let size = UInt64(pages * GuestMemory.pageSize)
    for index in 0..<pages { kvaPages[kva.rawValue + UInt64(index * GuestMemory.pageSize)] = nil }
    _ = try? kvaStrictDomain?.unmap(IOVA(kva.rawValue), size: size)
    if let fast = kvaFastDomain, let table = fast.pageTable {
      _ = try? table.unmap(IOVA(kva.rawValue), size: size)
      kvaFastPendingFlush = true
    }
  }

  /// The deferred invalidation of KVA-fast mode.
  public func flushKVA() {
    guard kvaFastPendingFlush, let fast = kvaFastDomain, let iommu else { return }
    iommu.core.iotlb.invalidate(domain: fast.id)
    kvaFastPendingFlush = false
  }

  private func bypassDomain() throws(IOMMUError) -> IOMMUDomain {
    if let existing = bypass { return existing }
    let domain = try iommu!.core.allocateDomain(.paging)
    try domain.map(IOVA(0), to: PhysicalAddress(0), size: memory.size, protection: .readWrite)
    bypass = domain
    return domain
  }

  private func kvaDomain(strict: Bool) throws(IOMMUError) -> IOMMUDomain {
    if let existing = strict ? kvaStrictDomain : kvaFastDomain { return existing }
    let domain = try iommu!.core.allocateDomain(.paging)
    for (kva, gpa) in kvaPages {
      try domain.map(
        IOVA(kva), to: PhysicalAddress(gpa), size: UInt64(GuestMemory.pageSize), protection: .readWrite)
    }
    if strict { kvaStrictDomain = domain } else { kvaFastDomain = domain }
    return domain
  }

  /// Every PASID the device still has, given back (a driver going away).
  func disableAllPASIDs(of device: PCIDevice) {
    for pasid in device.pasids.keys { try? disablePASID(device, pasid) }
  }
}
