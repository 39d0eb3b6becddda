import GuestABI
public import IOMMU
public import PCIe

/// A PCI function as the guest kernel knows it (Linux struct pci_dev with its struct device): what
/// enumeration found, the driver bound to it, its trust, and its DMA parameters.
public final class PCIDevice: CustomStringConvertible {
  public let function: RequesterID
  public let vendorID: UInt16
  public let deviceID: UInt16
  /// Memory BARs by index, at their guest-physical addresses.
  public let bars: [Int: Range<UInt64>]
  /// Where the MSI-X table and PBA live, from the MSI-X capability; nil without one.
  public let msix: MSIXLocation?
  /// Whether the function has an ACS capability (group formation, SEMANTICS.md §1).
  public let hasACS: Bool
  /// PASIDs the function supports (its PASID capability's width; 0 without one).
  public let maxPASID: UInt32

  /// The driver bound now.
  public internal(set) var driver: (any PCIDriver)?
  /// The device's trust as the guest TSM client established it (SEMANTICS.md §6).
  public internal(set) var trust: DeviceTrust = .untrusted
  /// dma_set_mask: the highest address the device can emit. Linux's default is 32 bits.
  public internal(set) var dmaMask: UInt64 = 0xFFFF_FFFF
  /// dma_set_max_seg_size: the longest segment a scatter-gather mapping may merge (default 64 KiB).
  public var maxSegmentSize = 0x1_0000
  /// A user (VFIO-like) owner's cookie while the device is user-owned.
  public internal(set) var userOwner: OwnerCookie?

  /// Offset of the PASID capability in configuration space.
  let pasidCapability: Int?
  /// PASIDs enabled for the bound driver.
  var pasids: [PASID: PASIDUse] = [:]

  /// Live mappings the kernel must tear down if the driver goes away without unmapping them.
  var bounces: [UInt64: Bounce] = [:]
  var iommuMappings: [UInt64: UInt64] = [:]
  var coherent: [UInt64: CoherentBuffer] = [:]

  init(
    function: RequesterID, vendorID: UInt16, deviceID: UInt16, bars: [Int: Range<UInt64>],
    msix: MSIXLocation?,
    hasACS: Bool, maxPASID: UInt32, pasidCapability: Int?
  ) {
    self.pasidCapability = pasidCapability
    self.function = function
    self.vendorID = vendorID
    self.deviceID = deviceID
    self.bars = bars
    self.msix = msix
    self.hasACS = hasACS
    self.maxPASID = maxPASID
  }

  public var bdf: BDF { function.bdf() }
  public var description: String { "\(function) [\(hexID(vendorID)):\(hexID(deviceID))]" }
  /// Whether the device is accepted: in RUN with the guest's blessing, DMA goes direct to private memory.
  public var isAccepted: Bool { trust == .accepted }
}

/// A device's trust in the guest (SEMANTICS.md §6). It changes only while no driver is bound, except
/// when the host or the device takes it away (`revoked`).
public enum DeviceTrust: Hashable, Sendable, CustomStringConvertible {
  /// Not locked: DMA bounces through shared memory.
  case untrusted
  /// Locked (CONFIG_LOCKED), not yet accepted: still bounced; evidence can be fetched.
  case locked
  /// Accepted (RUN): DMA goes directly to private memory.
  case accepted
  /// Locked or accepted until the host or the device changed the TDI's state underneath: new mappings
  /// are refused until the guest unlocks it and starts again.
  case revoked(String)

  public var description: String {
    switch self {
    case .untrusted: "untrusted"
    case .locked: "locked"
    case .accepted: "accepted"
    case .revoked(let why): "revoked (\(why))"
    }
  }
}

/// One bounced mapping: the caller's buffer and the swiotlb slot standing in for it.
struct Bounce {
  var original: UInt64
  var slot: UInt64
  var size: Int
  var direction: DMADirection
  /// The IOVA mapped for the slot, with a vIOMMU.
  var iova: UInt64?
}

/// Memory from dma_alloc_coherent.
public struct CoherentBuffer: Hashable, Sendable {
  /// The kernel's address of the buffer (guest-physical).
  public var gpa: UInt64
  /// The address the device uses.
  public var dmaAddress: DMAAddress
  public var size: Int
  /// Whether the pages were made shared (a device that is not accepted can reach only shared memory).
  public var shared: Bool
}

func hexID(_ value: UInt16) -> String {
  let digits = String(value, radix: 16)
  return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
}
