public import PCIe
public import TDISP

/// The copy engine behind one cove-dma function's BAR0: a register file and four descriptor queues
/// whose rings live in guest memory. Every byte it touches goes through its ``DMAPort`` as TLPs with
/// the T bit its TDI state allows (SEMANTICS.md §5): T=1 while the function's TDI is in RUN (unless a
/// descriptor marks a buffer as shared, T=0), T=0 otherwise.
///
/// Register map (BAR0 offsets, little-endian; reads of undefined offsets return 0, writes are ignored):
///
/// | offset | register | access |
/// |---|---|---|
/// | 0x000 | ID = 0x414D4443 ("CDMA") | RO |
/// | 0x004 | VERSION = 0x00010000 | RO |
/// | 0x008 | STATUS: bit 0 a queue stopped on a fault | RO |
/// | 0x00C | DESCRIPTORS_COMPLETED | RO |
/// | 0x010 / 0x014 | BYTES_MOVED low / high | RO |
/// | 0x100 + 0x40·q | queue q (0…3): RING_BASE low (+0x00), high (+0x04) — the ring's IOVA | RW |
/// | +0x08 | RING_SIZE: entries, a power of two, 1…4096 (RING_BASE and RING_SIZE ignore writes while ENABLE is set) | RW |
/// | +0x0C | CONTROL: bit 0 ENABLE, bit 1 RING_T0 (ring and status writes use T=0 even in RUN) | RW |
/// | +0x10 | PASID: bit 31 valid, bits 19:0 the PASID every request of the queue carries | RW |
/// | +0x14 | MSIX_VECTOR | RW |
/// | +0x18 | DOORBELL: the new tail; the engine runs descriptors HEAD…tail−1 at once | WO |
/// | +0x1C | HEAD: the next descriptor the engine will read | RO |
/// | +0x20 | FAULT: 0, or the 1-based index of the descriptor that faulted | RO |
///
/// Descriptor (32 bytes in the ring): source IOVA u64, destination IOVA u64, length u32, flags u32
/// (bit 0 INTERRUPT on completion, bit 1 SOURCE_T0, bit 2 DESTINATION_T0: the buffer is shared
/// memory, use T=0), status u32 and bytes u32 written back by the engine (status 1 done, 2 fault).
/// A fault stops the queue (CONTROL.ENABLE cleared, FAULT set) and fires the queue's vector; a
/// refused request while the TDI is in RUN is an Unsupported Request on a TDI request, which takes
/// the TDI to ERROR (PCIe 6.x §11.2; the caller wires that through `requestRefused`).
public final class CoveDMAEngine {
  public static let id: UInt32 = 0x414D_4443
  public static let version: UInt32 = 0x0001_0000
  public static let queueCount = 4
  public static let descriptorSize = 32
  public static let maxRingEntries: UInt32 = 4096
  static let queueBase = 0x100
  static let queueStride = 0x40

  public struct Descriptor: Hashable, Sendable {
    public var source: UInt64
    public var destination: UInt64
    public var length: UInt32
    public var flags: Flags

    public struct Flags: OptionSet, Hashable, Sendable {
      public var rawValue: UInt32
      public init(rawValue: UInt32) { self.rawValue = rawValue }
      public static let interrupt = Flags(rawValue: 1 << 0)
      public static let sourceT0 = Flags(rawValue: 1 << 1)
      public static let destinationT0 = Flags(rawValue: 1 << 2)
    }

    public init(source: UInt64, destination: UInt64, length: UInt32, flags: Flags = []) {
      self.source = source
      self.destination = destination
      self.length = length
      self.flags = flags
    }

    /// The 32 bytes the driver writes into the ring (status and bytes zero).
    public var bytes: [UInt8] {
      var out = [UInt8](repeating: 0, count: CoveDMAEngine.descriptorSize)
      func put(_ value: UInt64, at offset: Int, width: Int) {
        for index in 0..<width {
          out[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(index)))
        }
      }
      put(source, at: 0, width: 8)
      put(destination, at: 8, width: 8)
      put(UInt64(length), at: 16, width: 4)
      put(UInt64(flags.rawValue), at: 20, width: 4)
      return out
    }
  }

  public enum Status: UInt32, Sendable {
    case pending = 0
    case done = 1
    case fault = 2
  }

  struct Queue {
    var ringBase: UInt64 = 0
    var ringSize: UInt32 = 0
    var control: UInt32 = 0
    var pasid: UInt32 = 0
    var vector: UInt32 = 0
    var head: UInt32 = 0
    var fault: UInt32 = 0
    var enabled: Bool { control & 1 != 0 }
    var ringT0: Bool { control & 2 != 0 }
    var pasidValue: UInt32? { pasid & 0x8000_0000 != 0 ? pasid & 0xF_FFFF : nil }
  }

  public let function: RequesterID
  public weak var port: (any DMAPort)?
  /// The function's TDI state, asked at every request (the T bit follows it).
  public var tdiState: () -> TDIState = { .configUnlocked }
  /// Called when a request the engine issued was refused while its TDI was in RUN.
  public var requestRefused: () -> Void = {}
  public private(set) var descriptorsCompleted: UInt32 = 0
  public private(set) var bytesMoved: UInt64 = 0
  public private(set) var faulted = false
  /// The last refusal, for traces and tests.
  public private(set) var lastFault: DMAFaultReason?
  var queues = [Queue](repeating: Queue(), count: CoveDMAEngine.queueCount)

  public init(function: RequesterID) {
    self.function = function
  }

  // MARK: MMIO

  public func mmioRead(offset: Int, size: Int) -> UInt32 {
    guard size == 4, offset & 3 == 0 else { return 0 }
    switch offset {
    case 0x000: return Self.id
    case 0x004: return Self.version
    case 0x008: return faulted ? 1 : 0
    case 0x00C: return descriptorsCompleted
    case 0x010: return UInt32(truncatingIfNeeded: bytesMoved)
    case 0x014: return UInt32(truncatingIfNeeded: bytesMoved >> 32)
    default: break
    }
    guard let (index, register) = queueRegister(offset) else { return 0 }
    let queue = queues[index]
    switch register {
    case 0x00: return UInt32(truncatingIfNeeded: queue.ringBase)
    case 0x04: return UInt32(truncatingIfNeeded: queue.ringBase >> 32)
    case 0x08: return queue.ringSize
    case 0x0C: return queue.control
    case 0x10: return queue.pasid
    case 0x14: return queue.vector
    case 0x1C: return queue.head
    case 0x20: return queue.fault
    default: return 0
    }
  }

  public func mmioWrite(offset: Int, size: Int, value: UInt32) {
    guard size == 4, offset & 3 == 0, let (index, register) = queueRegister(offset) else { return }
    // The ring's base and size are fixed while the queue is enabled (HEAD must stay inside it).
    let enabled = queues[index].enabled
    switch register {
    case 0x00 where !enabled: queues[index].ringBase = queues[index].ringBase & ~0xFFFF_FFFF | UInt64(value)
    case 0x04 where !enabled:
      queues[index].ringBase = queues[index].ringBase & 0xFFFF_FFFF | UInt64(value) << 32
    case 0x08 where !enabled: queues[index].ringSize = value
    case 0x0C:
      // Enabling a queue starts it from descriptor 0 with no fault.
      if value & 1 != 0, !queues[index].enabled {
        queues[index].head = 0
        queues[index].fault = 0
      }
      queues[index].control = value & 3
    case 0x10: queues[index].pasid = value & 0x800F_FFFF
    case 0x14: queues[index].vector = value & 0x7FF
    case 0x18: ring(queue: index, tail: value)
    default: break
    }
  }

  private func queueRegister(_ offset: Int) -> (Int, Int)? {
    guard offset >= Self.queueBase, offset < Self.queueBase + Self.queueCount * Self.queueStride else {
      return nil
    }
    return ((offset - Self.queueBase) / Self.queueStride, (offset - Self.queueBase) % Self.queueStride)
  }

  // MARK: The engine

  /// Runs descriptors from HEAD up to `tail` (mod RING_SIZE). A bad ring size or a disabled queue
  /// does nothing; a fault stops the queue.
  private func ring(queue index: Int, tail: UInt32) {
    var queue = queues[index]
    defer { queues[index] = queue }
    guard queue.enabled, let port, queue.ringSize > 0, queue.ringSize <= Self.maxRingEntries,
      queue.ringSize & (queue.ringSize - 1) == 0, tail < queue.ringSize
    else { return }
    var scratch = [UInt8](repeating: 0, count: Self.descriptorSize)
    // At most one lap: a tail equal to HEAD means nothing to do.
    while queue.head != tail {
      let slot = UInt64(queue.head)
      let address = queue.ringBase &+ slot * UInt64(Self.descriptorSize)
      let inRun = tdiState() == .run
      let ringTBit = inRun && !queue.ringT0
      let fetch = scratch.withUnsafeMutableBytes { buffer in
        port.dmaRead(
          TLP(
            requesterID: function, address: address, pasid: queue.pasidValue, tBit: ringTBit,
            kind: .memoryRead(length: Self.descriptorSize)), into: buffer)
      }
      guard case .completed = fetch else {
        stop(&queue, refused: fetch, inRun: inRun)
        return
      }
      let descriptor = Self.decode(scratch)
      let source = TLP(
        requesterID: function, address: descriptor.source, pasid: queue.pasidValue,
        tBit: inRun && !descriptor.flags.contains(.sourceT0),
        kind: .memoryRead(length: Int(descriptor.length)))
      let destination = TLP(
        requesterID: function, address: descriptor.destination, pasid: queue.pasidValue,
        tBit: inRun && !descriptor.flags.contains(.destinationT0),
        kind: .memoryWrite(length: Int(descriptor.length)))
      let (verdict, moved) = port.dmaCopy(
        source: source, destination: destination, length: Int(descriptor.length))
      bytesMoved &+= UInt64(moved)
      let status: Status = verdict.isCompleted ? .done : .fault
      var writeBack = [UInt8](repeating: 0, count: 8)
      for byte in 0..<4 {
        writeBack[byte] = UInt8(truncatingIfNeeded: status.rawValue >> (8 * UInt32(byte)))
        writeBack[4 + byte] = UInt8(
          truncatingIfNeeded: UInt32(truncatingIfNeeded: moved) >> (8 * UInt32(byte)))
      }
      let statusWrite = writeBack.withUnsafeBytes { buffer in
        port.dmaWrite(
          TLP(
            requesterID: function, address: address &+ 24, pasid: queue.pasidValue, tBit: ringTBit,
            kind: .memoryWrite(length: 8)), from: buffer)
      }
      guard verdict.isCompleted else {
        queue.fault = queue.head + 1
        stop(&queue, refused: verdict, inRun: inRun)
        return
      }
      guard case .completed = statusWrite else {
        queue.fault = queue.head + 1
        stop(&queue, refused: statusWrite, inRun: inRun)
        return
      }
      descriptorsCompleted &+= 1
      queue.head = (queue.head + 1) & (queue.ringSize - 1)
      if descriptor.flags.contains(.interrupt) {
        port.signalInterrupt(from: function, vector: UInt16(queue.vector))
      }
    }
  }

  private func stop(_ queue: inout Queue, refused verdict: DMAVerdict, inRun: Bool) {
    if case .refused(let reason) = verdict { lastFault = reason }
    if queue.fault == 0 { queue.fault = queue.head + 1 }
    queue.control &= ~1
    faulted = true
    port?.signalInterrupt(from: function, vector: UInt16(queue.vector))
    // An Unsupported Request on a request the TDI issued: ERROR (PCIe 6.x §11.2).
    if inRun { requestRefused() }
  }

  static func decode(_ bytes: [UInt8]) -> Descriptor {
    func value(_ offset: Int, _ width: Int) -> UInt64 {
      (0..<width).reduce(0) { $0 | UInt64(bytes[offset + $1]) << (8 * UInt64($1)) }
    }
    return Descriptor(
      source: value(0, 8), destination: value(8, 8), length: UInt32(value(16, 4)),
      flags: Descriptor.Flags(rawValue: UInt32(value(20, 4))))
  }
}
