public import GuestKernel
import IOMMU
public import PCIe

/// A guest driver for cove-dma's copy engine, written only against the guest kernel's public API as
/// any driver author would write theirs. It works the same whether the device is untrusted (the DMA
/// API bounces its buffers through shared memory) or accepted (direct to private memory): the driver
/// never chooses, the DMA API does at map time (SEMANTICS.md §5–6).
public final class CoveDMADriver: PCIDriver {
  public static let vendorID: UInt16 = 0x1B36
  public static let deviceID: UInt16 = 0x0C0E
  public let name = "cove-dma"
  public let idTable = [PCIDeviceID(vendor: CoveDMADriver.vendorID, device: CoveDMADriver.deviceID)]

  private var queues: [RequesterID: CopyQueue] = [:]
  /// Completion interrupts taken, per function.
  public private(set) var interrupts: [RequesterID: Int] = [:]

  public init() {}

  public func probe(_ device: PCIDevice, kernel: GuestKernel) throws(KernelError) {
    guard device.bars[0] != nil else { throw KernelError(.ENODEV, "\(device): no BAR0") }
    try kernel.enableDevice(device)
    try kernel.dmaSetMask(device, bits: 64)
    queues[device.function] = try CopyQueue(kernel: kernel, device: device, index: 0, pasid: nil)
  }

  public func remove(_ device: PCIDevice, kernel: GuestKernel) {
    queues.removeValue(forKey: device.function)?.tearDown(kernel: kernel, device: device)
  }

  public func interrupt(_ device: PCIDevice, vector: UInt16, kernel: GuestKernel) {
    interrupts[device.function, default: 0] += 1
  }

  /// Copies `length` bytes from the buffer at `source` to the one at `destination` (guest-physical)
  /// with the engine: both mapped through the DMA API, one descriptor, the doorbell, the status read
  /// back, both unmapped (which copies a bounced destination back). Returns the bytes the engine
  /// moved. ENODEV if the driver is not bound to `device`; EIO if the engine reported a fault.
  public func copy(
    _ device: PCIDevice, kernel: GuestKernel, from source: UInt64, to destination: UInt64, length: Int
  ) throws(KernelError) -> Int {
    guard let queue = queues[device.function] else { throw KernelError(.ENODEV, "\(device): not bound") }
    return try mapAndCopy(kernel, device, queue, source, destination, length)
  }
}

/// Maps both buffers through the DMA API, runs the copy, unmaps both.
func mapAndCopy(
  _ kernel: GuestKernel, _ device: PCIDevice, _ queue: CopyQueue, _ source: UInt64, _ destination: UInt64,
  _ length: Int
) throws(KernelError) -> Int {
  let from = try kernel.mapSingle(device, gpa: source, size: length, direction: .toDevice)
  let to: DMAAddress
  do throws(KernelError) {
    to = try kernel.mapSingle(device, gpa: destination, size: length, direction: .fromDevice)
  } catch {
    kernel.unmapSingle(device, from, size: length, direction: .toDevice)
    throw error
  }
  defer {
    kernel.unmapSingle(device, from, size: length, direction: .toDevice)
    kernel.unmapSingle(device, to, size: length, direction: .fromDevice)
  }
  return try queue.copy(
    kernel: kernel, device: device, from: from.rawValue, to: to.rawValue, length: length)
}
