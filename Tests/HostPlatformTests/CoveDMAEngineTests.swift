import HostPlatform
import PCIe
import TDISP
import Testing

/// The cove-dma engine against a recording DMA port: registers, descriptor processing, the T bit it
/// chooses, write-back, interrupts, and what a refused request does.
@Suite struct CoveDMAEngineTests {
  /// Memory as a dictionary of bytes; refuses any request whose address is in `refuse`.
  final class RecordingPort: DMAPort {
    var bytes: [UInt64: UInt8] = [:]
    var requests: [TLP] = []
    var interrupts: [(RequesterID, UInt16)] = []
    var refuse: (TLP) -> DMAFaultReason? = { _ in nil }

    func load(_ address: UInt64, _ data: [UInt8]) {
      for (index, byte) in data.enumerated() { bytes[address + UInt64(index)] = byte }
    }
    func peek(_ address: UInt64, _ count: Int) -> [UInt8] {
      (0..<count).map { bytes[address + UInt64($0)] ?? 0 }
    }
    func dmaRead(_ tlp: TLP, into buffer: UnsafeMutableRawBufferPointer) -> DMAVerdict {
      requests.append(tlp)
      if let reason = refuse(tlp) { return .refused(reason) }
      for index in 0..<buffer.count { buffer[index] = bytes[tlp.address + UInt64(index)] ?? 0 }
      return .completed
    }
    func dmaWrite(_ tlp: TLP, from buffer: UnsafeRawBufferPointer) -> DMAVerdict {
      requests.append(tlp)
      if let reason = refuse(tlp) { return .refused(reason) }
      for index in 0..<buffer.count { bytes[tlp.address + UInt64(index)] = buffer[index] }
      return .completed
    }
    func dmaCopy(source: TLP, destination: TLP, length: Int) -> (verdict: DMAVerdict, bytesMoved: Int) {
      requests += [source, destination]
      if let reason = refuse(source) ?? refuse(destination) { return (.refused(reason), 0) }
      for index in 0..<length {
        bytes[destination.address + UInt64(index)] = bytes[source.address + UInt64(index)] ?? 0
      }
      return (.completed, length)
    }
    func signalInterrupt(from function: RequesterID, vector: UInt16) { interrupts.append((function, vector)) }
  }

  static let function = RequesterID(rawValue: 0x0301)
  static let ring: UInt64 = 0x10000

  func engine(state: TDIState = .configUnlocked) -> (CoveDMAEngine, RecordingPort, () -> Int) {
    let engine = CoveDMAEngine(function: Self.function)
    let port = RecordingPort()
    engine.port = port
    engine.tdiState = { state }
    var refusals = 0
    engine.requestRefused = { refusals += 1 }
    // Queue 1: ring at 0x10000, 8 entries, vector 3, enabled.
    engine.mmioWrite(offset: 0x140, size: 4, value: UInt32(Self.ring))
    engine.mmioWrite(offset: 0x144, size: 4, value: 0)
    engine.mmioWrite(offset: 0x148, size: 4, value: 8)
    engine.mmioWrite(offset: 0x154, size: 4, value: 3)
    engine.mmioWrite(offset: 0x14C, size: 4, value: 1)
    return (engine, port, { refusals })
  }

  @Test func identityRegisters() {
    let engine = CoveDMAEngine(function: Self.function)
    #expect(engine.mmioRead(offset: 0, size: 4) == 0x414D_4443)
    #expect(engine.mmioRead(offset: 4, size: 4) == 0x0001_0000)
    #expect(engine.mmioRead(offset: 0x2, size: 2) == 0)  // only aligned DW accesses
    #expect(engine.mmioRead(offset: 0x1FC, size: 4) == 0)
  }

  @Test func anUntrustedEngineCopiesWithT0AndWritesStatusBack() {
    let (engine, port, _) = engine()
    port.load(0x20000, Array(0..<64))
    port.load(
      Self.ring,
      CoveDMAEngine.Descriptor(source: 0x20000, destination: 0x30000, length: 64, flags: .interrupt).bytes)
    engine.mmioWrite(offset: 0x158, size: 4, value: 1)  // DOORBELL tail = 1
    #expect(port.peek(0x30000, 64) == Array(0..<64))
    // Descriptor fetch, source, destination, status write-back: all T=0 (the TDI is not in RUN).
    #expect(port.requests.map(\.address) == [Self.ring, 0x20000, 0x30000, Self.ring + 24])
    #expect(port.requests.allSatisfy { !$0.tBit && $0.requesterID == Self.function && $0.pasid == nil })
    #expect(port.peek(Self.ring + 24, 8) == [1, 0, 0, 0, 64, 0, 0, 0])
    #expect(engine.mmioRead(offset: 0x15C, size: 4) == 1)  // HEAD
    #expect(engine.mmioRead(offset: 0x00C, size: 4) == 1)
    #expect(engine.mmioRead(offset: 0x010, size: 4) == 64)
    #expect(port.interrupts.map(\.1) == [3])
  }

  @Test func aRunningTDIUsesT1ExceptForSharedBuffersAndCarriesThePASID() {
    let (engine, port, _) = engine(state: .run)
    engine.mmioWrite(offset: 0x150, size: 4, value: 0x8000_0005)  // PASID 5
    port.load(
      Self.ring,
      CoveDMAEngine.Descriptor(source: 0x20000, destination: 0x30000, length: 16, flags: .destinationT0).bytes
    )
    engine.mmioWrite(offset: 0x158, size: 4, value: 1)
    #expect(port.requests.map(\.tBit) == [true, true, false, true])
    #expect(port.requests.allSatisfy { $0.pasid == 5 })
  }

  @Test func aRefusedRequestStopsTheQueueAndInRunErrorsTheTDI() {
    let (engine, port, refusals) = engine(state: .run)
    port.refuse = { $0.address == 0x30000 ? .tZeroToPrivate : nil }
    for slot in 0..<2 {
      port.load(
        Self.ring + UInt64(slot * 32),
        CoveDMAEngine.Descriptor(source: 0x20000, destination: 0x30000, length: 16).bytes)
    }
    engine.mmioWrite(offset: 0x158, size: 4, value: 2)
    #expect(engine.mmioRead(offset: 0x008, size: 4) == 1)  // STATUS: faulted
    #expect(engine.mmioRead(offset: 0x160, size: 4) == 1)  // FAULT: descriptor 1
    #expect(engine.mmioRead(offset: 0x14C, size: 4) & 1 == 0)  // queue disabled
    #expect(engine.mmioRead(offset: 0x15C, size: 4) == 0)  // HEAD did not move
    #expect(port.peek(Self.ring + 24, 4) == [2, 0, 0, 0])  // status: fault
    #expect(engine.lastFault == .tZeroToPrivate)
    #expect(refusals() == 1)
    #expect(port.interrupts.count == 1)
    // The second descriptor was never fetched.
    #expect(!port.requests.contains { $0.address == Self.ring + 32 })
  }

  @Test func aRefusalOutsideRunDoesNotTouchTheTDI() {
    let (engine, port, refusals) = engine(state: .configLocked)
    port.refuse = { _ in .blocked }
    engine.mmioWrite(offset: 0x158, size: 4, value: 1)
    #expect(engine.mmioRead(offset: 0x008, size: 4) == 1)
    #expect(refusals() == 0)
  }

  @Test func badRingSizesAndDisabledQueuesDoNothing() {
    let (engine, port, _) = engine()
    // RING_SIZE and RING_BASE are fixed while the queue is enabled.
    engine.mmioWrite(offset: 0x148, size: 4, value: 6)
    engine.mmioWrite(offset: 0x140, size: 4, value: 0x9000)
    #expect(engine.mmioRead(offset: 0x148, size: 4) == 8)
    #expect(engine.mmioRead(offset: 0x140, size: 4) == 0x10000)
    engine.mmioWrite(offset: 0x14C, size: 4, value: 0)
    engine.mmioWrite(offset: 0x148, size: 4, value: 6)  // not a power of two
    engine.mmioWrite(offset: 0x14C, size: 4, value: 1)
    engine.mmioWrite(offset: 0x158, size: 4, value: 1)
    engine.mmioWrite(offset: 0x14C, size: 4, value: 0)
    engine.mmioWrite(offset: 0x148, size: 4, value: 8)
    engine.mmioWrite(offset: 0x14C, size: 4, value: 1)
    engine.mmioWrite(offset: 0x158, size: 4, value: 9)  // tail beyond the ring
    engine.mmioWrite(offset: 0x14C, size: 4, value: 0)
    engine.mmioWrite(offset: 0x158, size: 4, value: 1)  // disabled
    #expect(port.requests.isEmpty)
  }
}
