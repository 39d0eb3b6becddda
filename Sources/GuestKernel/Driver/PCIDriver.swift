public import IOMMU

/// A guest driver for PCI functions (Linux struct pci_driver). Drivers are written against this and
/// the kernel's public API only.
public protocol PCIDriver: AnyObject {
  /// The driver's name (what bind and unbind name it by); unique in a kernel.
  var name: String { get }
  /// The functions it binds to.
  var idTable: [PCIDeviceID] { get }
  /// How the driver uses DMA, which decides the DMA-ownership check at probe (SEMANTICS.md §1).
  var dmaUse: DriverDMA { get }
  /// Sets the device up. Throwing fails the bind; EPROBE_DEFER puts the device on the deferred list,
  /// retried whenever another probe succeeds.
  func probe(_ device: PCIDevice, kernel: GuestKernel) throws(KernelError)
  /// Undoes probe. Mappings still live afterwards are reported by the DMA debug checks and torn down.
  func remove(_ device: PCIDevice, kernel: GuestKernel)
  /// An MSI-X vector fired.
  func interrupt(_ device: PCIDevice, vector: UInt16, kernel: GuestKernel)
}

extension PCIDriver {
  public var dmaUse: DriverDMA { .dmaAPI }
  public func interrupt(_ device: PCIDevice, vector: UInt16, kernel: GuestKernel) {}
}

/// A vendor and device ID a driver matches (struct pci_device_id); a nil device matches any.
public struct PCIDeviceID: Hashable, Sendable {
  public var vendor: UInt16
  public var device: UInt16?
  public init(vendor: UInt16, device: UInt16?) {
    self.vendor = vendor
    self.device = device
  }
  func matches(_ pci: PCIDevice) -> Bool {
    pci.vendorID == vendor && (device == nil || device == pci.deviceID)
  }
}
