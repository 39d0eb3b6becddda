public import GuestKernel
import IOMMU
public import PCIe

/// A guest driver for cove-dma's copy engine, written only against the guest kernel's public API as
/// any driver author would write theirs. It works the same whether the device is untrusted (the DMA
/// API bounces its buffers through shared memory) or accepted (direct to private memory): the driver
/// never chooses, the DMA API does at map time (SEMANTICS.md §5–6).
///
/// The device's register map is documented with the engine (HostPlatform/Devices/CoveDMAEngine.swift):
/// queue 0 at BAR0 + 0x100, a ring of 32-byte descriptors in coherent memory.
public final class CoveDMADriver: PCIDriver {
  public static let vendorID: UInt16 = 0x1B36
  public static let deviceID: UInt16 = 0x0C0E
  public let name = "cove-dma"
  public let idTable = [PCIDeviceID(vendor: CoveDMADriver.vendorID, device: CoveDMADriver.deviceID)]

  /// Descriptors per ring (one page of 32-byte descriptors).
  static let ringEntries = 128
  enum Register {
    static let id: UInt64 = 0x000
    static let ringBaseLow: UInt64 = 0x100
    static let ringBaseHigh: UInt64 = 0x104
    static let ringSize: UInt64 = 0x108
    static let control: UInt64 = 0x10C
    static let vector: UInt64 = 0x114
    static let doorbell: UInt64 = 0x118
  }
  static let engineID: UInt32 = 0x414D_4443

  final class Instance {
    let ring: CoherentBuffer
    var tail = 0
    init(ring: CoherentBuffer) { self.ring = ring }
  }
  private var instances: [RequesterID: Instance] = [:]
  /// Completion interrupts taken, per function.
  public private(set) var interrupts: [RequesterID: Int] = [:]

  public init() {}

  public func probe(_ device: PCIDevice, kernel: GuestKernel) throws(KernelError) {
    guard device.bars[0] != nil else { throw KernelError(.ENODEV, "\(device): no BAR0") }
    try kernel.enableDevice(device)
    let id = try kernel.mmioRead(device, bar: 0, offset: Register.id)
    guard id == Self.engineID else {
      throw KernelError(.ENODEV, "\(device): engine ID 0x\(String(id, radix: 16)), not cove-dma")
    }
    try kernel.dmaSetMask(device, bits: 64)
    let ring = try kernel.allocCoherent(device, size: Self.ringEntries * 32)
    do throws(KernelError) {
      try kernel.mmioWrite(device, bar: 0, offset: Register.control, value: 0)
      try kernel.mmioWrite(
        device, bar: 0, offset: Register.ringBaseLow,
        value: UInt32(truncatingIfNeeded: ring.dmaAddress.rawValue))
      try kernel.mmioWrite(
        device, bar: 0, offset: Register.ringBaseHigh, value: UInt32(ring.dmaAddress.rawValue >> 32))
      try kernel.mmioWrite(device, bar: 0, offset: Register.ringSize, value: UInt32(Self.ringEntries))
      try kernel.mmioWrite(device, bar: 0, offset: Register.vector, value: 0)
      try kernel.mmioWrite(device, bar: 0, offset: Register.control, value: 1)
    } catch {
      kernel.freeCoherent(device, ring)
      throw error
    }
    instances[device.function] = Instance(ring: ring)
  }

  public func remove(_ device: PCIDevice, kernel: GuestKernel) {
    guard let instance = instances.removeValue(forKey: device.function) else { return }
    try? kernel.mmioWrite(device, bar: 0, offset: Register.control, value: 0)
    kernel.freeCoherent(device, instance.ring)
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
    guard let instance = instances[device.function] else {
      throw KernelError(.ENODEV, "\(device): not bound")
    }
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
    let slot = instance.ring.gpa + UInt64(instance.tail * 32)
    var descriptor = [UInt8](repeating: 0, count: 32)
    put(from.rawValue, into: &descriptor, at: 0, width: 8)
    put(to.rawValue, into: &descriptor, at: 8, width: 8)
    put(UInt64(length), into: &descriptor, at: 16, width: 4)
    put(1, into: &descriptor, at: 20, width: 4)  // INTERRUPT on completion
    try kernel.memory.write(slot, bytes: descriptor)
    instance.tail = (instance.tail + 1) % Self.ringEntries
    try kernel.mmioWrite(device, bar: 0, offset: Register.doorbell, value: UInt32(instance.tail))
    let written = try kernel.memory.read(slot + 24, count: 8)
    let status =
      UInt32(written[0]) | UInt32(written[1]) << 8 | UInt32(written[2]) << 16 | UInt32(written[3]) << 24
    let moved = Int(
      UInt32(written[4]) | UInt32(written[5]) << 8 | UInt32(written[6]) << 16 | UInt32(written[7]) << 24)
    guard status == 1 else {
      throw KernelError(.EIO, "\(device): descriptor status \(status) after \(moved) bytes")
    }
    return moved
  }

  private func put(_ value: UInt64, into bytes: inout [UInt8], at offset: Int, width: Int) {
    for index in 0..<width { bytes[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(index))) }
  }
}
