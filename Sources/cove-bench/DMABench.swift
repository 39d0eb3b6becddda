import CoveCommands
import CoveCrypto
// Section 4: cove-dma's copy engine through the platform IOMMU into a guest's private memory
// (issue: host platform, "Speed"), beside memcpy of the same bytes in the same run.
import CoveScenario
import Foundation
import HostPlatform
import IOMMU
import PCIe
import SPDM
import TDISP

enum DMABench {
  static let bytes = 64 << 20
  /// The platform IOMMU's IOTLB: the core's default size (a 64 MiB copy touches 32 Ki 4 KiB
  /// translations, far more than it holds; the translator's burst path reads sequential leaves from
  /// the level-1 table instead, as a hardware IOMMU's paging-structure caches do).
  static let iotlbEntries = IOMMUCore.Configuration().iotlbCapacity

  static func run(runs: Int) throws {
    print(
      "cove-bench: cove-dma copying 64 MiB inside a guest's private memory (T=1, TDI in RUN) through the IOMMU"
    )
    print(
      "  median of \(max(9, runs / 2)) runs each, memcpy of the same 64 MiB measured in the same run; platform IOTLB \(iotlbEntries) entries"
    )
    for large in [false, true] {
      let (dma, copy) = try measure(
        largeIOMMUPages: large, runs: max(9, runs / 2), iotlbEntries: iotlbEntries)
      let ratio = copy / dma
      let target = large ? 0.8 : 0.5
      print(
        String(
          format:
            "  %@  dma %8.3f ms (%6.2f GiB/s)  memcpy %8.3f ms (%6.2f GiB/s)  ratio %5.2f (target >= %.1f): %@",
          (large ? "2 MiB mappings" : "4 KiB mappings") as NSString, dma, gibPerSecond(dma), copy,
          gibPerSecond(copy),
          ratio, target, (ratio >= target ? "met" : "NOT MET") as NSString))
    }
  }

  static func gibPerSecond(_ milliseconds: Double) -> Double {
    Double(bytes) / Double(1 << 30) / (milliseconds / 1000)
  }

  static func measure(largeIOMMUPages: Bool, runs: Int, iotlbEntries: Int) throws -> (
    dma: Double, memcpy: Double
  ) {
    let memoryBytes = UInt64(bytes) * 2 + (4 << 20)
    let memory = PlatformMemory(pages: Int(memoryBytes / 4096) + 1024, entropy: SystemEntropy())
    let core = try IOMMUCore(
      configuration: IOMMUCore.Configuration(iotlbCapacity: iotlbEntries),
      tableMemory: try TablePagePool(maxPages: 1 << 16))
    let iommu = PlatformIOMMU(core: core, memory: memory)
    let vmm = VMM(memory: memory, iommu: iommu)
    let identity = try BuiltInDevice()
    let device = try CoveDMADevice(identity: identity.responderConfiguration, entropy: SystemEntropy())
    var policy = identity.requesterPolicy
    policy.validationTime = BuiltInDevice.notBefore + 86_400
    let tsm = HostTSM(
      configuration: device.tsmConfiguration,
      transport: DOEMailboxTransport(port: ConfigSpaceDOEPort(device: device.tdisp)),
      rootPort: device.rootPort,
      policy: policy, entropy: SystemEntropy())
    try vmm.plug(device, tsm: tsm)
    let guest = try vmm.createGuest(
      GuestConfiguration(memoryBytes: memoryBytes, largeIOMMUPages: largeIOMMUPages))
    let function = device.tsmConfiguration.interfaces[1]
    try vmm.assign(function, to: guest.id)
    try tsm.connect()
    try tsm.bind(function, to: guest.id)
    try tsm.lock(function, for: guest.id)
    try tsm.start(function, for: guest.id)
    let bar = device.bar0(of: function)!.lowerBound
    func reg(_ offset: UInt64, _ value: UInt32) throws {
      _ = try vmm.mmio(guest.id, function: function, address: bar + offset, write: value)
    }
    let source: UInt64 = 4 << 20
    let destination = source + UInt64(bytes)
    try vmm.guestWrite(
      guest.id, gpa: 0,
      bytes: CoveDMAEngine.Descriptor(source: source, destination: destination, length: UInt32(bytes)).bytes)
    try reg(0x140, 0)
    try reg(0x144, 0)
    try reg(0x148, 2)

    // The baseline's buffers are backed like platform memory (anonymous, 2 MiB-aligned, MADV_HUGEPAGE),
    // so the ratio measures the emulator's work, not a difference in host page size.
    let plainSource = HugePageBuffer(byteCount: bytes)
    let plainDestination = HugePageBuffer(byteCount: bytes)
    defer {
      plainSource.release()
      plainDestination.release()
    }
    plainSource.bytes.initializeMemory(as: UInt8.self, repeating: 0x5A)
    plainDestination.bytes.initializeMemory(as: UInt8.self, repeating: 0)
    let clock = ContinuousClock()
    var dma: [Duration] = []
    var copy: [Duration] = []
    for _ in 0..<(runs + 1) {
      try reg(0x14C, 0)
      try reg(0x14C, 1)
      dma.append(try clock.measure { try reg(0x158, 1) })
      guard device.engines[function]!.faulted == false else { fatalError("DMA faulted: \(iommu.faults)") }
      copy.append(
        clock.measure {
          plainDestination.bytes.baseAddress!.copyMemory(
            from: plainSource.bytes.baseAddress!, byteCount: bytes)
        })
    }
    // The first pass of each pages the memory in; it is not counted.
    return (medianMilliseconds(Array(dma.dropFirst())), medianMilliseconds(Array(copy.dropFirst())))
  }
}

/// Memory for a baseline, backed the way `PlatformMemory` backs guest memory.
struct HugePageBuffer {
  private let mapping: UnsafeMutableRawPointer
  private let length: Int
  let bytes: UnsafeMutableRawBufferPointer

  init(byteCount: Int) {
    let hugePage = 2 << 20
    length = byteCount + hugePage
    guard let address = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
      address != MAP_FAILED
    else { fatalError("cannot map \(byteCount) bytes for the baseline") }
    mapping = address
    let aligned = address.alignedUp(toMultipleOf: hugePage)
    #if os(Linux)
      _ = madvise(aligned, byteCount, MADV_HUGEPAGE)
    #endif
    bytes = UnsafeMutableRawBufferPointer(start: aligned, count: byteCount)
  }

  func release() { munmap(mapping, length) }
}
