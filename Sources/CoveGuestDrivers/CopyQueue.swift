import GuestKernel
import IOMMU

/// One cove-dma queue as a driver runs it: a ring of 32-byte descriptors in coherent memory,
/// programmed at BAR0 + 0x100 + 0x40·queue (HostPlatform/Devices/CoveDMAEngine.swift has the map),
/// optionally tagged with a PASID. The engine runs the descriptors a doorbell hands it at once, so a
/// submission's status is readable when the doorbell write returns.
final class CopyQueue {
  static let entries = 128
  static let engineID: UInt32 = 0x414D_4443
  let index: Int
  let ring: Ring
  private var tail = 0

  /// Where the descriptors live: coherent memory the kernel allocated for the device, or a process's
  /// memory for a queue working in the process's address space (SVA).
  enum Ring {
    case coherent(CoherentBuffer)
    case process(GuestProcess, VirtualAddress)
  }

  private static func register(_ queue: Int, _ offset: UInt64) -> UInt64 {
    0x100 + 0x40 * UInt64(queue) + offset
  }

  /// Checks the engine is there, allocates the ring and enables the queue. `ringAddress` says what
  /// address the device reaches the ring at in the queue's address space (by default the ring's DMA
  /// address; a PASID in bypass or KVA mode translates other addresses).
  init(
    kernel: GuestKernel, device: PCIDevice, index: Int, pasid: PASID?,
    ringAddress: (CoherentBuffer) throws(KernelError) -> UInt64 = { $0.dmaAddress.rawValue }
  ) throws(KernelError) {
    let id = try kernel.mmioRead(device, bar: 0, offset: 0)
    guard id == Self.engineID else {
      throw KernelError(.ENODEV, "\(device): engine ID 0x\(String(id, radix: 16)), not cove-dma")
    }
    self.index = index
    let buffer = try kernel.allocCoherent(device, size: Self.entries * 32)
    ring = .coherent(buffer)
    do throws(KernelError) {
      try program(kernel, device, address: try ringAddress(buffer), pasid: pasid)
    } catch {
      kernel.freeCoherent(device, buffer)
      throw error
    }
  }

  /// A queue whose ring is a page of `process`'s memory, reached with the process's PASID.
  init(kernel: GuestKernel, device: PCIDevice, index: Int, process: GuestProcess, pasid: PASID)
    throws(KernelError)
  {
    self.index = index
    let page = try process.mmap(pages: 1, shared: !device.isAccepted)
    ring = .process(process, page)
    do throws(KernelError) { try program(kernel, device, address: page.rawValue, pasid: pasid) } catch {
      process.munmap(page, pages: 1)
      throw error
    }
  }

  private func program(_ kernel: GuestKernel, _ device: PCIDevice, address: UInt64, pasid: PASID?)
    throws(KernelError)
  {
    let index = self.index
    do {
      try kernel.mmioWrite(device, bar: 0, offset: Self.register(index, 0x0C), value: 0)
      try kernel.mmioWrite(
        device, bar: 0, offset: Self.register(index, 0x00), value: UInt32(truncatingIfNeeded: address))
      try kernel.mmioWrite(device, bar: 0, offset: Self.register(index, 0x04), value: UInt32(address >> 32))
      try kernel.mmioWrite(device, bar: 0, offset: Self.register(index, 0x08), value: UInt32(Self.entries))
      try kernel.mmioWrite(
        device, bar: 0, offset: Self.register(index, 0x10),
        value: pasid.map { 0x8000_0000 | $0.rawValue } ?? 0)
      try kernel.mmioWrite(device, bar: 0, offset: Self.register(index, 0x14), value: UInt32(index))
      try kernel.mmioWrite(device, bar: 0, offset: Self.register(index, 0x0C), value: 1)
    }
  }

  /// Disables the queue and frees the ring.
  func tearDown(kernel: GuestKernel, device: PCIDevice) {
    try? kernel.mmioWrite(device, bar: 0, offset: Self.register(index, 0x0C), value: 0)
    switch ring {
    case .coherent(let buffer): kernel.freeCoherent(device, buffer)
    case .process(let process, let page): process.munmap(page, pages: 1)
    }
  }

  private func writeRing(_ kernel: GuestKernel, _ offset: UInt64, _ bytes: [UInt8]) throws(KernelError) {
    switch ring {
    case .coherent(let buffer): try kernel.memory.write(buffer.gpa + offset, bytes: bytes)
    case .process(let process, let page):
      try process.write(VirtualAddress(page.rawValue + offset), bytes: bytes)
    }
  }

  private func readRing(_ kernel: GuestKernel, _ offset: UInt64, _ count: Int) throws(KernelError) -> [UInt8]
  {
    switch ring {
    case .coherent(let buffer): try kernel.memory.read(buffer.gpa + offset, count: count)
    case .process(let process, let page):
      try process.read(VirtualAddress(page.rawValue + offset), count: count)
    }
  }

  /// Runs one copy between two device addresses; returns the bytes moved. EIO when the engine
  /// reports a fault (the queue is re-enabled for the next submission).
  func copy(kernel: GuestKernel, device: PCIDevice, from source: UInt64, to destination: UInt64, length: Int)
    throws(KernelError) -> Int
  {
    let slot = UInt64(tail * 32)
    var descriptor = [UInt8](repeating: 0, count: 32)
    put(source, into: &descriptor, at: 0, width: 8)
    put(destination, into: &descriptor, at: 8, width: 8)
    put(UInt64(length), into: &descriptor, at: 16, width: 4)
    put(1, into: &descriptor, at: 20, width: 4)  // INTERRUPT on completion
    try writeRing(kernel, slot, descriptor)
    tail = (tail + 1) % Self.entries
    try kernel.mmioWrite(device, bar: 0, offset: Self.register(index, 0x18), value: UInt32(tail))
    let written = try readRing(kernel, slot + 24, 8)
    let status =
      UInt32(written[0]) | UInt32(written[1]) << 8 | UInt32(written[2]) << 16 | UInt32(written[3]) << 24
    let moved = Int(
      UInt32(written[4]) | UInt32(written[5]) << 8 | UInt32(written[6]) << 16 | UInt32(written[7]) << 24)
    guard status == 1 else {
      // A fault stopped the queue; turn it back on past the failed descriptor (or, when the engine
      // could not even read the descriptor, at it).
      try? kernel.mmioWrite(device, bar: 0, offset: Self.register(index, 0x0C), value: 1)
      let head =
        (try? kernel.mmioRead(device, bar: 0, offset: Self.register(index, 0x1C))).map(Int.init) ?? tail
      tail = head
      throw KernelError(.EIO, "\(device): queue \(index) descriptor status \(status) after \(moved) bytes")
    }
    return moved
  }

  private func put(_ value: UInt64, into bytes: inout [UInt8], at offset: Int, width: Int) {
    for index in 0..<width { bytes[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(index))) }
  }
}
