public import PCIe

/// A bridge or switch port between a device and its root complex, as the grouping rules see it.
///
/// Only its ACS matters: a port with ACS (request redirect and upstream forwarding, Linux
/// REQ_ACS_FLAGS) forces peer-to-peer traffic up to the IOMMU, so the devices below it can be told
/// apart; a port without it lets them reach each other unseen, so they share one group
/// (SEMANTICS.md §1; Linux pci_device_group walks up with pci_acs_path_enabled).
public struct BridgeInfo: Hashable, Sendable, CustomStringConvertible {
  public var bdf: BDF
  public var hasACS: Bool
  public init(_ bdf: BDF, hasACS: Bool) {
    self.bdf = bdf
    self.hasACS = hasACS
  }
  public var description: String { "\(bdf)\(hasACS ? " acs" : " no-acs")" }
}

/// Whether a function shares its device (slot) with other functions, and whether ACS isolates it
/// from them (Linux get_pci_function_alias_group: multi-function devices without ACS share a group).
public enum FunctionIsolation: Sendable, Hashable {
  /// The only function of its device.
  case singleFunction
  /// One function of a multi-function device that implements ACS: isolated from its siblings.
  case multiFunctionWithACS
  /// One function of a multi-function device without ACS: shares a group with the siblings that
  /// also lack it.
  case multiFunctionWithoutACS
}

/// What the IOMMU core is told about a device when it is probed (Linux iommu_probe_device).
public struct DeviceDescription: Hashable, Sendable {
  public var bdf: BDF
  /// The bridges and switch ports above the device, from the root port down to its parent. Empty
  /// for a root-complex integrated endpoint.
  public var upstream: [BridgeInfo]
  public var functionIsolation: FunctionIsolation
  /// Another function whose requester ID this one also uses for DMA (Linux pci_add_dma_alias
  /// quirks, PCIe-to-PCI bridges). The two can never be isolated, so they share a group
  /// (pci_device_group → get_pci_alias_group). It must already be registered.
  public var requesterIDAlias: BDF?
  /// PASIDs the device can use: [0, maxPASID). 0 means no PASID support (Linux
  /// dev->iommu->max_pasids). At most 2^20 (PCIe 6.x §6.20).
  public var maxPASID: UInt32
  /// Firmware requires a direct (identity) mapping for this device (Linux dev->iommu->require_direct,
  /// RMRR/IORT RMR). Such a device can never be put behind a blocking domain, so never user-owned.
  public var requiresIdentity: Bool
  /// An external-facing or not-accepted device (Linux pci_dev->untrusted): its group gets a strict
  /// DMA domain (SEMANTICS.md §2).
  public var untrusted: Bool

  public init(
    _ bdf: BDF, upstream: [BridgeInfo] = [], functionIsolation: FunctionIsolation = .singleFunction,
    requesterIDAlias: BDF? = nil, maxPASID: UInt32 = 0, requiresIdentity: Bool = false,
    untrusted: Bool = false
  ) {
    self.bdf = bdf
    self.upstream = upstream
    self.functionIsolation = functionIsolation
    self.requesterIDAlias = requesterIDAlias
    self.maxPASID = maxPASID
    self.requiresIdentity = requiresIdentity
    self.untrusted = untrusted
  }

  /// Whether PASID-tagged requests are isolated: every port on the path, and the function itself if
  /// it is one of several, has ACS. Linux pci_enable_pasid refuses otherwise (EINVAL), because
  /// peer-to-peer routing ignores the PASID prefix (SEMANTICS.md §3).
  public var acsOnPASIDPath: Bool {
    upstream.allSatisfy(\.hasACS) && functionIsolation != .multiFunctionWithoutACS
  }
}

/// How a bound kernel driver relates to DMA ownership (Linux struct device_driver).
public enum DriverDMA: Sendable, Hashable {
  /// A normal driver using the DMA API: its probe takes the group through
  /// iommu_device_use_default_domain.
  case dmaAPI
  /// The driver manages DMA ownership itself (Linux driver_managed_dma, e.g. vfio-pci, which then
  /// claims the group for a user): probe skips the default-domain check.
  case driverManagedDMA
  /// The driver does no DMA (the RFC's "suppress" flag, pci-stub, pcieport): the device counts as
  /// driver-less and is compatible with either owner (SEMANTICS.md §1).
  case noDMA
}

/// Who owns a group's DMA (SEMANTICS.md §1; Linux group->owner_cnt and group->owner).
public enum DMAOwnership: Hashable, Sendable {
  case unowned
  /// Kernel drivers using the default domain; `users` is the owner count.
  case kernel(users: Int)
  /// A user (e.g. VFIO/iommufd) identified by its cookie; `users` is the shared owner count.
  case user(OwnerCookie, users: Int)
}
