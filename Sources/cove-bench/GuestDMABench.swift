import CoveCommands
import CoveCrypto
// Section 6: the guest kernel's DMA API (issue 6, "Speed"), each figure beside memcpy of the same
// bytes measured in the same run:
// - map+unmap of one 4 KiB page (dma_map_single + dma_unmap_single, DMA_BIDIRECTIONAL) on each path the
//   DMA API can take: bounced through the swiotlb (device not accepted), direct (accepted, no vIOMMU),
//   through the vIOMMU with a strict domain and with a lazy one (flush queue); with the DMA debug
//   checks off, then the bounced and direct paths again with them on;
// - swiotlb pool contention: N 4 KiB mappings in flight in a 1 MiB pool (256 page slots), map N then
//   unmap N; the maps the pool cannot take fail with ENOMEM (a mapping error, not a crash).
// Every configuration is checked once before timing (the address is the path's kind of address), so a
// mistake in the setup aborts the bench instead of timing another path.
import CoveScenario
import Foundation
import GuestABI
import GuestKernel
import HostPlatform
import IOMMU
import PCIe
import SPDM

enum GuestDMABench {
  static let function = BDF(bus: 3, device: 0, function: 1).requesterID
  static let pageSize = GuestMemory.pageSize
  /// swiotlb= of every guest: 1 MiB, 256 page-aligned 4 KiB slots, so 512 mappings in flight do not fit.
  static let swiotlbBytes = 1 << 20
  /// Guest memory: room for the pool, 512 contention buffers and the vIOMMU's tables.
  static let guestMemoryBytes: UInt64 = 16 << 20
  /// map+unmap pairs (and memcpys) per timed pass; a multiple of the lazy domain's flush-queue size
  /// (256), so every pass pays the same number of flushes. Passes are short (about 0.1–5 ms) and
  /// many, so that on shared cores the median is of passes nothing else interrupted.
  static let operationsPerPass = 512
  /// Timed passes per figure for `runs`: `passesPerRun` short passes per run.
  static let passesPerRun = 6

  /// The DMA API path a configuration is meant to take.
  enum Path: CustomStringConvertible {
    case bounced, direct, viommuStrict, viommuLazy

    var accepted: Bool { self != .bounced }
    var viommu: Bool { self == .viommuStrict || self == .viommuLazy }

    var description: String {
      switch self {
      case .bounced: "bounced"
      case .direct: "direct"
      case .viommuStrict: "vIOMMU strict"
      case .viommuLazy: "vIOMMU lazy"
      }
    }

    var explanation: String {
      switch self {
      case .bounced: "not accepted: swiotlb slot, copied in at map and out at unmap"
      case .direct: "accepted, no vIOMMU: the buffer's GPA, nothing to do"
      case .viommuStrict: "accepted: IOVA + stage-1 PTE, INVALIDATE through the command queue at every unmap"
      case .viommuLazy: "accepted: IOVA + stage-1 PTE, flush queue (one domain INVALIDATE per 256 unmaps)"
      }
    }
  }

  static func run(runs: Int) throws {
    let identity = try BuiltInDevice()
    try mapUnmap(identity: identity, passes: runs * passesPerRun)
    print("")
    try contention(identity: identity, passes: runs * passesPerRun)
  }

  // MARK: - A guest

  /// A host with one cove-dma device (connected by its TSM) whose function 03:00.1 is assigned to a
  /// confidential guest, and that guest's kernel over a VMMGuestPort, the device accepted or not.
  struct Guest {
    let vmm: VMM
    let guest: VMMGuest
    let kernel: GuestKernel
    let device: PCIDevice

    init(identity: BuiltInDevice, path: Path, dmaDebug: Bool) throws {
      let memory = PlatformMemory(pages: 8192, entropy: SeededEntropy(seed: 1))
      let core = try IOMMUCore(tableMemory: try TablePagePool(maxPages: 1024))
      vmm = VMM(memory: memory, iommu: PlatformIOMMU(core: core, memory: memory))
      let hardware = try CoveDMADevice(
        identity: identity.responderConfiguration, entropy: SeededEntropy(seed: 2))
      var tsmPolicy = identity.requesterPolicy
      tsmPolicy.validationTime = BuiltInDevice.notBefore + 86_400
      let tsm = HostTSM(
        configuration: hardware.tsmConfiguration,
        transport: DOEMailboxTransport(port: ConfigSpaceDOEPort(device: hardware.tdisp)),
        rootPort: hardware.rootPort, policy: tsmPolicy, entropy: SeededEntropy(seed: 3))
      try vmm.plug(hardware, tsm: tsm)
      guest = try vmm.createGuest(GuestConfiguration(memoryBytes: guestMemoryBytes, viommu: path.viommu))
      try vmm.assign(function, to: guest.id)
      try tsm.connect()
      kernel = try GuestKernel(
        host: VMMGuestPort(vmm: vmm, guest: guest.id),
        options: KernelOptions(
          autoprobe: false, swiotlbBytes: swiotlbBytes, iommuStrict: path == .viommuStrict, dmaDebug: dmaDebug
        ),
        entropy: SeededEntropy(seed: 4))
      guard let device = kernel.device(function) else { fatalError("guest: \(function) was not enumerated") }
      self.device = device
      if path.accepted {
        try kernel.tsmLock(device)
        try kernel.tsmAccept(device, policy: Self.guestPolicy(identity))
      }
      try kernel.dmaSetMask(device, bits: 64)
    }

    /// The policy a guest image would carry for the built-in device: its root, its measurements.
    static func guestPolicy(_ identity: BuiltInDevice) -> AttestationPolicy {
      var expected: [UInt8: Set<[UInt8]>] = [:]
      for block in identity.measurements {
        if let value = block.dmtf?.value { expected[block.index] = [value] }
      }
      return AttestationPolicy(
        trustAnchors: [identity.pki.root.der], measurements: expected,
        validationTime: BuiltInDevice.notBefore + 86_400)
    }

    /// Maps `buffer` once and aborts unless the address is the kind `path` gives: a swiotlb slot's
    /// shared alias (≥ X), the buffer's GPA, or an IOVA the vIOMMU translates to the buffer's host
    /// page, private, in a domain of the expected mode.
    func check(_ path: Path, buffer: UInt64) throws {
      func abort(_ why: String) -> Never { fatalError("guest bench, \(path): \(why)") }
      guard let pool = kernel.swiotlb else { abort("the guest has no swiotlb pool") }
      guard device.isAccepted == path.accepted else { abort("device trust is \(device.trust)") }
      guard (kernel.iommu != nil) == path.viommu else { abort("vIOMMU present: \(kernel.iommu != nil)") }
      let bouncesBefore = pool.statistics.allocations
      let address = try kernel.mapSingle(device, gpa: buffer, size: pageSize, direction: .bidirectional)
      defer { kernel.unmapSingle(device, address, size: pageSize, direction: .bidirectional) }
      let bounced = pool.statistics.allocations != bouncesBefore
      guard bounced == (path == .bounced) else { abort("\(address) bounced: \(bounced)") }
      switch path {
      case .bounced:
        let boundary = kernel.platform.boundary
        guard address.rawValue >= boundary, pool.contains(address.rawValue - boundary) else {
          abort("\(address) is not a swiotlb slot's shared alias (X = \(hex(boundary)))")
        }
        let slot = try vmm.guestRead(guest.id, gpa: address.rawValue - boundary, count: pageSize)
        guard slot == (try vmm.guestRead(guest.id, gpa: buffer, count: pageSize)) else {
          abort("the slot does not hold the buffer's bytes after map")
        }
      case .direct:
        guard address.rawValue == buffer else { abort("\(address) is not the buffer's GPA \(hex(buffer))") }
      case .viommuStrict, .viommuLazy:
        guard let viommu = guest.viommu, let iommu = kernel.iommu,
          let group = iommu.core.group(of: device.bdf),
          let layer = try iommu.core.currentDomain(of: group).dma
        else { abort("no vIOMMU DMA domain for \(device)") }
        let lazy = if case .lazy = layer.mode { true } else { false }
        guard lazy == (path == .viommuLazy) else { abort("the DMA domain is \(layer.mode)") }
        guard
          case .success(let translation) = viommu.translate(
            requester: function, pasid: nil, iova: IOVA(address.rawValue), access: .write),
          translation.hostPhysical == guest.hostAddress(of: buffer),
          !translation.protection.contains(.shared)
        else { abort("\(address) does not translate to the buffer's private page at the vIOMMU") }
      }
    }

    /// Aborts if the debug checks reported a misuse or a mapping is left: the timed calls were clean.
    func checkClean(_ what: String) {
      let reports = kernel.debug.drainReports()
      guard reports.isEmpty else { fatalError("guest bench, \(what): DMA debug reported \(reports)") }
      guard kernel.swiotlb?.usedSlots == 0 else {
        fatalError("guest bench, \(what): swiotlb slots left in use")
      }
      if let core = kernel.iommu?.core, let group = core.group(of: device.bdf),
        let layer = try? core.currentDomain(of: group).dma, layer.liveMappings != 0
      {
        fatalError("guest bench, \(what): \(layer.liveMappings) IOVA mappings left")
      }
    }
  }

  /// 4 KiB buffers outside the guest for the memcpy baseline: `pages` sources and as many destinations.
  final class CopyBaseline {
    let source: UnsafeMutableRawPointer
    let destination: UnsafeMutableRawPointer
    let pages: Int
    private(set) var sink: UInt8 = 0

    init(pages: Int) {
      self.pages = pages
      source = .allocate(byteCount: pages * pageSize, alignment: pageSize)
      destination = .allocate(byteCount: pages * pageSize, alignment: pageSize)
      memset(source, 0x5A, pages * pageSize)
      memset(destination, 0, pages * pageSize)
    }

    deinit {
      source.deallocate()
      destination.deallocate()
    }

    /// `count` memcpys of 4 KiB, page after page (wrapping), as the mappings touch their buffers.
    func copy(_ count: Int) {
      var page = 0
      for _ in 0..<count {
        memcpy(destination + page * pageSize, source + page * pageSize, pageSize)
        page = page + 1 == pages ? 0 : page + 1
      }
      sink &+= destination.load(fromByteOffset: (count * 61) % (pages * pageSize), as: UInt8.self)
    }
  }

  /// One thing to time: `pass` does `operations` operations; `baseline` does as many 4 KiB memcpys.
  struct Workload {
    let operations: Int
    let baseline: CopyBaseline
    let pass: () throws -> Void
  }

  /// Median ns per operation of each workload and of its memcpy baseline. Every round times each
  /// workload's pass, then its baseline, workload after workload, so that load from elsewhere on
  /// shared cores falls on all of them alike; `passes` rounds are counted after one uncounted warm-up.
  static func interleaved(passes: Int, _ workloads: [Workload]) throws -> [(
    operation: Double, memcpy: Double
  )] {
    let clock = ContinuousClock()
    var operationSamples = [[Duration]](repeating: [], count: workloads.count)
    var copySamples = [[Duration]](repeating: [], count: workloads.count)
    for round in 0...passes {
      for (index, workload) in workloads.enumerated() {
        let operation = try clock.measure { try workload.pass() }
        let copy = clock.measure { workload.baseline.copy(workload.operations) }
        guard round > 0 else { continue }
        operationSamples[index].append(operation)
        copySamples[index].append(copy)
      }
    }
    return workloads.indices.map { index in
      let baseline = workloads[index].baseline
      precondition(
        baseline.sink == 0x5A &* UInt8(truncatingIfNeeded: passes + 1), "memcpy copied wrong bytes")
      let operations = workloads[index].operations
      return (
        PlatformBench.medianNanoseconds(operationSamples[index], operations: operations),
        PlatformBench.medianNanoseconds(copySamples[index], operations: operations)
      )
    }
  }

  // MARK: - map+unmap of one page

  static func mapUnmap(identity: BuiltInDevice, passes: Int) throws {
    let configurations: [(path: Path, debug: Bool)] = [
      (.bounced, false), (.direct, false), (.viommuStrict, false), (.viommuLazy, false),
      (.bounced, true), (.direct, true),
    ]
    var rigs: [Guest] = []
    var workloads: [Workload] = []
    for (path, debug) in configurations {
      let rig = try Guest(identity: identity, path: path, dmaDebug: debug)
      let buffer = try rig.kernel.memory.allocatePages(1)
      try rig.kernel.memory.write(buffer, bytes: (0..<pageSize).map { UInt8(truncatingIfNeeded: $0 &* 7) })
      try rig.check(path, buffer: buffer)
      let kernel = rig.kernel
      let device = rig.device
      rigs.append(rig)
      workloads.append(
        Workload(operations: operationsPerPass, baseline: CopyBaseline(pages: 1)) {
          for _ in 0..<operationsPerPass {
            let address = try kernel.mapSingle(device, gpa: buffer, size: pageSize, direction: .bidirectional)
            kernel.unmapSingle(device, address, size: pageSize, direction: .bidirectional)
          }
        })
    }
    let results = try interleaved(passes: passes, workloads)

    print(
      "cove-bench: guest DMA API, map+unmap of one 4 KiB page (dma_map_single + dma_unmap_single, DMA_BIDIRECTIONAL)"
    )
    print(
      "  median of \(passes) interleaved passes of \(operationsPerPass) operations each, ns per map+unmap; memcpy of 4 KiB in the same run"
    )
    print("  DMA debug checks off (CONFIG_DMA_API_DEBUG=n) unless marked; a bounce copies twice (in, out)")
    for ((path, debug), (rig, (mapNs, copyNs))) in zip(configurations, zip(rigs, results)) {
      rig.checkClean("\(path)")
      if debug && path == .bounced {
        print("  with DMA debug checks on (CONFIG_DMA_API_DEBUG=y):")
      }
      let label = (debug ? "  \(path), debug" : "\(path)").padding(toLength: 16, withPad: " ", startingAt: 0)
      print(
        String(
          format: "  %@ %8.1f ns  memcpy %6.1f ns  ratio %7.2f  %@", label as NSString, mapNs, copyNs,
          mapNs / copyNs, path.explanation as NSString))
    }
  }

  // MARK: - swiotlb pool contention

  /// `buffers.count` mappings in flight: map them all, then unmap the ones that were made.
  final class InFlight {
    let kernel: GuestKernel
    let device: PCIDevice
    let buffers: [UInt64]
    private var addresses: [DMAAddress] = []
    /// Maps refused with ENOMEM since the last reset.
    var failures = 0

    init(kernel: GuestKernel, device: PCIDevice, count: Int) throws {
      self.kernel = kernel
      self.device = device
      buffers = try (0..<count).map { _ in try kernel.memory.allocatePages(1) }
      addresses.reserveCapacity(count)
    }

    func cycle() throws {
      for buffer in buffers {
        do {
          addresses.append(
            try kernel.mapSingle(device, gpa: buffer, size: pageSize, direction: .bidirectional))
        } catch {
          guard error.errno == .ENOMEM else { throw error }
          failures += 1
        }
      }
      for address in addresses {
        kernel.unmapSingle(device, address, size: pageSize, direction: .bidirectional)
      }
      addresses.removeAll(keepingCapacity: true)
    }
  }

  static func contention(identity: BuiltInDevice, passes: Int) throws {
    let slots = swiotlbBytes / pageSize
    let rig = try Guest(identity: identity, path: .bounced, dmaDebug: false)
    let probe = try rig.kernel.memory.allocatePages(1)
    try rig.check(.bounced, buffer: probe)
    rig.kernel.memory.freePages(probe, count: 1)
    let sizes = [16, 128, 512]
    var sets: [InFlight] = []
    var workloads: [Workload] = []
    for count in sizes {
      let set = try InFlight(kernel: rig.kernel, device: rig.device, count: count)
      // Sanity: every map beyond the pool's page slots fails with ENOMEM, and nothing else does.
      try set.cycle()
      guard set.failures == max(0, count - slots) else {
        fatalError(
          "guest bench, contention N=\(count): \(set.failures) maps failed, expected \(max(0, count - slots))"
        )
      }
      rig.checkClean("contention N=\(count)")
      set.failures = 0
      // Whole cycles of N, at least `operationsPerPass` map attempts per pass.
      let cycles = max(1, operationsPerPass / count)
      sets.append(set)
      workloads.append(
        Workload(operations: cycles * count, baseline: CopyBaseline(pages: count)) {
          for _ in 0..<cycles { try set.cycle() }
        })
    }
    let results = try interleaved(passes: passes, workloads)
    rig.checkClean("contention")

    print(
      "cove-bench: swiotlb contention, N bidirectional 4 KiB mappings in flight (untrusted device, \(swiotlbBytes >> 10) KiB pool = \(slots) page slots)"
    )
    print(
      "  map N, then unmap the ones that succeeded; median of \(passes) interleaved passes, ns per map attempted (+ its unmap)"
    )
    print("  beside as many 4 KiB memcpys over N distinct buffers; DMA debug checks off")
    for (index, count) in sizes.enumerated() {
      let cycles = (passes + 1) * (workloads[index].operations / count)
      let expected = max(0, count - slots)
      guard sets[index].failures == expected * cycles else {
        fatalError(
          "guest bench, contention N=\(count): \(sets[index].failures) maps failed over \(cycles) cycles")
      }
      let (operationNs, copyNs) = results[index]
      print(
        String(
          format: "  N = %3d  %8.1f ns  memcpy %6.1f ns  ratio %7.2f  ENOMEM: %d of %d maps per cycle",
          count, operationNs, copyNs, operationNs / copyNs, expected, count))
    }
  }
}

/// `0x…` of an address, for the abort messages.
private func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }
