import CoveScenario
import GuestKernel
import IOMMU
import PCIe

/// A minimal driver for cove-dma's copy engine, written the way a guest-driver author writes one:
/// only the guest kernel's public API (config space, BAR registers, the DMA API), and the engine's
/// documented register map (queue q at BAR0 + 0x100 + 0x40·q; 32-byte descriptors: source, destination,
/// length, flags, then status and bytes written back).
///
/// It never asks whether the device is trusted: the DMA API decides at map time whether a buffer is
/// bounced through shared memory or reached directly in private memory.
final class MiniCopyDriver: CopyingDriver {
  let name = "cove-dma-mini"
  let idTable = [PCIDeviceID(vendor: 0x1B36, device: 0x0C0E)]

  /// Queue 3, so it does not collide with Cove's own samples if both were bound in turn.
  private let queue: UInt64 = 3
  private var rings: [RequesterID: CoherentBuffer] = [:]
  private var tails: [RequesterID: Int] = [:]
  private static let entries = 16

  private func register(_ offset: UInt64) -> UInt64 { 0x100 + 0x40 * queue + offset }

  func probe(_ device: PCIDevice, kernel: GuestKernel) throws(KernelError) {
    try kernel.enableDevice(device)
    guard try kernel.mmioRead(device, bar: 0, offset: 0) == 0x414D_4443 else {
      throw KernelError(.ENODEV, "\(device) is not a cove-dma engine")
    }
    try kernel.dmaSetMask(device, bits: 64)
    let ring = try kernel.allocCoherent(device, size: Self.entries * 32)
    do throws(KernelError) {
      try kernel.mmioWrite(device, bar: 0, offset: register(0x0C), value: 0)
      try kernel.mmioWrite(
        device, bar: 0, offset: register(0x00), value: UInt32(truncatingIfNeeded: ring.dmaAddress.rawValue))
      try kernel.mmioWrite(
        device, bar: 0, offset: register(0x04), value: UInt32(ring.dmaAddress.rawValue >> 32))
      try kernel.mmioWrite(device, bar: 0, offset: register(0x08), value: UInt32(Self.entries))
      try kernel.mmioWrite(device, bar: 0, offset: register(0x0C), value: 1)
    } catch {
      kernel.freeCoherent(device, ring)
      throw error
    }
    rings[device.function] = ring
    tails[device.function] = 0
  }

  func remove(_ device: PCIDevice, kernel: GuestKernel) {
    try? kernel.mmioWrite(device, bar: 0, offset: register(0x0C), value: 0)
    if let ring = rings.removeValue(forKey: device.function) { kernel.freeCoherent(device, ring) }
  }

  func copy(
    _ device: PCIDevice, kernel: GuestKernel, from source: UInt64, to destination: UInt64, length: Int
  )
    throws(KernelError) -> Int
  {
    guard let ring = rings[device.function], let tail = tails[device.function] else {
      throw KernelError(.ENODEV, "\(device): not bound")
    }
    let from = try kernel.mapSingle(device, gpa: source, size: length, direction: .toDevice)
    defer { kernel.unmapSingle(device, from, size: length, direction: .toDevice) }
    let to = try kernel.mapSingle(device, gpa: destination, size: length, direction: .fromDevice)
    defer { kernel.unmapSingle(device, to, size: length, direction: .fromDevice) }

    var descriptor = [UInt8](repeating: 0, count: 32)
    for (offset, value, width) in [(0, from.rawValue, 8), (8, to.rawValue, 8), (16, UInt64(length), 4)] {
      for byte in 0..<width {
        descriptor[offset + byte] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(byte)))
      }
    }
    let slot = ring.gpa + UInt64(tail * 32)
    try kernel.memory.write(slot, bytes: descriptor)
    tails[device.function] = (tail + 1) % Self.entries
    try kernel.mmioWrite(device, bar: 0, offset: register(0x18), value: UInt32((tail + 1) % Self.entries))
    let status = try kernel.memory.read(slot + 24, count: 8)
    guard status[0] == 1 else {
      throw KernelError(.EIO, "\(device): the engine reported status \(status[0])")
    }
    return Int(status[4]) | Int(status[5]) << 8 | Int(status[6]) << 16 | Int(status[7]) << 24
  }
}
