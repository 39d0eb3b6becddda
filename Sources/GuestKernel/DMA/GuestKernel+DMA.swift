import GuestABI
public import IOMMU
public import PCIe

/// The DMA API (Linux include/linux/dma-mapping.h) as a confidential guest's kernel implements it
/// (SEMANTICS.md §5–6). The path is chosen when a mapping is made, from the device's trust then:
/// - not accepted: bounced through the shared swiotlb pool (kernel/dma/swiotlb.c), the device
///   reaching only shared memory with T=0;
/// - accepted: direct to the buffer in private memory (T=1);
/// - DMA_ATTR_CC_SHARED: the buffer is already shared, so direct to it, trusted or not.
/// Addresses follow the boundary X without a vIOMMU (private: the GPA; shared: GPA + X); with one,
/// they are IOVAs of the device's DMA domain whose entries say private or shared.
///
/// A mapping that cannot be made throws (`dma_mapping_error` in Linux): ENOMEM when the swiotlb pool
/// or the IOVA space is exhausted, EINVAL for a bad request, EIO when the device cannot reach the
/// buffer (beyond its DMA mask, no shared alias, or its trust was revoked).
extension GuestKernel {
  // MARK: Device parameters

  /// dma_set_mask_and_coherent. EIO for a width the platform cannot honour (below 32 or above 64
  /// bits), as dma_supported refuses.
  public func dmaSetMask(_ device: PCIDevice, bits: Int) throws(KernelError) {
    guard (32...64).contains(bits) else { throw KernelError(.EIO, "\(device): DMA mask of \(bits) bits") }
    device.dmaMask = bits == 64 ? .max : (1 << UInt64(bits)) - 1
  }

  // MARK: Streaming mappings

  /// dma_map_single: maps `size` bytes at `gpa` for `direction`.
  public func mapSingle(
    _ device: PCIDevice, gpa: UInt64, size: Int, direction: DMADirection, attributes: DMAAttributes = [],
    file: String = #fileID, line: Int = #line, function: String = #function
  ) throws(KernelError) -> DMAAddress {
    let address = try map(device, gpa, size, direction, attributes)
    if debug.enabled {
      debug.recordMap(
        device: device.function, dmaAddress: address.rawValue, cpuAddress: gpa, size: size,
        direction: direction,
        kind: .single, sgCount: 0, origin: origin(device, file, line, function))
    }
    return address
  }

  /// dma_unmap_single. Misuse (an address not mapped, a wrong size or direction) is reported by the
  /// debug checks with the mapping's origin, as Linux does; it does not throw.
  public func unmapSingle(
    _ device: PCIDevice, _ address: DMAAddress, size: Int, direction: DMADirection,
    attributes: DMAAttributes = [],
    file: String = #fileID, line: Int = #line, function: String = #function
  ) {
    report(
      debug.checkUnmap(
        device: device.function, dmaAddress: address.rawValue, size: size, direction: direction,
        kind: .single,
        sgCount: 0, origin: origin(device, file, line, function)))
    unmap(device, address.rawValue, size, direction, attributes)
  }

  /// dma_map_page: `size` bytes at `offset` into the page at `page`.
  public func mapPage(
    _ device: PCIDevice, page: UInt64, offset: Int, size: Int, direction: DMADirection,
    attributes: DMAAttributes = [], file: String = #fileID, line: Int = #line, function: String = #function
  ) throws(KernelError) -> DMAAddress {
    guard page % UInt64(GuestMemory.pageSize) == 0, offset >= 0, offset < GuestMemory.pageSize else {
      throw KernelError(.EINVAL, "dma_map_page: page \(hex(page)) offset \(offset)")
    }
    let gpa = page + UInt64(offset)
    let address = try map(device, gpa, size, direction, attributes)
    if debug.enabled {
      debug.recordMap(
        device: device.function, dmaAddress: address.rawValue, cpuAddress: gpa, size: size,
        direction: direction,
        kind: .page, sgCount: 0, origin: origin(device, file, line, function))
    }
    return address
  }

  /// dma_unmap_page.
  public func unmapPage(
    _ device: PCIDevice, _ address: DMAAddress, size: Int, direction: DMADirection,
    attributes: DMAAttributes = [],
    file: String = #fileID, line: Int = #line, function: String = #function
  ) {
    report(
      debug.checkUnmap(
        device: device.function, dmaAddress: address.rawValue, size: size, direction: direction, kind: .page,
        sgCount: 0, origin: origin(device, file, line, function)))
    unmap(device, address.rawValue, size, direction, attributes)
  }

  /// dma_map_sg: every entry mapped (all or nothing), then adjacent bus addresses merged into
  /// segments no longer than the device's maximum segment size.
  public func mapSG(
    _ device: PCIDevice, _ entries: [ScatterEntry], direction: DMADirection, attributes: DMAAttributes = [],
    file: String = #fileID, line: Int = #line, function: String = #function
  ) throws(KernelError) -> MappedScatterList {
    guard !entries.isEmpty else { throw KernelError(.EINVAL, "dma_map_sg of an empty list") }
    var addresses: [DMAAddress] = []
    addresses.reserveCapacity(entries.count)
    for entry in entries {
      do throws(KernelError) {
        addresses.append(try map(device, entry.gpa, entry.length, direction, attributes))
      } catch {
        for (done, address) in zip(entries, addresses) {
          unmap(device, address.rawValue, done.length, direction, attributes.union(.skipCPUSync))
        }
        throw error
      }
    }
    var segments: [DMASegment] = []
    for (entry, address) in zip(entries, addresses) {
      if let last = segments.last, last.address.rawValue + UInt64(last.length) == address.rawValue,
        last.length + entry.length <= device.maxSegmentSize
      {
        segments[segments.count - 1].length += entry.length
      } else {
        segments.append(DMASegment(address: address, length: entry.length))
      }
    }
    let origin = origin(device, file, line, function)
    for (entry, address) in zip(entries, addresses) {
      if debug.enabled {
        debug.recordMap(
          device: device.function, dmaAddress: address.rawValue, cpuAddress: entry.gpa, size: entry.length,
          direction: direction, kind: .scatterGather, sgCount: entries.count, origin: origin)
      }
    }
    return MappedScatterList(
      entries: entries, entryAddresses: addresses, segments: segments, direction: direction)
  }

  /// dma_unmap_sg, with the list dma_map_sg returned.
  public func unmapSG(
    _ device: PCIDevice, _ list: MappedScatterList, attributes: DMAAttributes = [],
    file: String = #fileID, line: Int = #line, function: String = #function
  ) {
    let origin = origin(device, file, line, function)
    for (entry, address) in zip(list.entries, list.entryAddresses) {
      report(
        debug.checkUnmap(
          device: device.function, dmaAddress: address.rawValue, size: entry.length,
          direction: list.direction,
          kind: .scatterGather, sgCount: list.entries.count, origin: origin))
      unmap(device, address.rawValue, entry.length, list.direction, attributes)
    }
  }

  // MARK: Syncs

  /// dma_sync_single_for_cpu: the CPU takes the buffer back; a bounced buffer the device wrote is
  /// copied out of the pool. `address` may point inside a mapping.
  public func syncSingleForCPU(
    _ device: PCIDevice, _ address: DMAAddress, size: Int, direction: DMADirection,
    file: String = #fileID, line: Int = #line, function: String = #function
  ) {
    report(
      debug.checkSync(
        device: device.function, dmaAddress: address.rawValue, size: size, direction: direction, forCPU: true,
        origin: origin(device, file, line, function)))
    guard let (start, bounce) = bounce(of: device, containing: address.rawValue, size: size) else { return }
    guard bounce.direction == .fromDevice || bounce.direction == .bidirectional, !device.isRevoked else {
      return
    }
    let offset = address.rawValue - start
    try? memory.copy(from: bounce.slot + offset, to: bounce.original + offset, count: size)
  }

  /// dma_sync_single_for_device: the device gets the buffer; a bounced buffer the CPU wrote is
  /// copied into the pool.
  public func syncSingleForDevice(
    _ device: PCIDevice, _ address: DMAAddress, size: Int, direction: DMADirection,
    file: String = #fileID, line: Int = #line, function: String = #function
  ) {
    report(
      debug.checkSync(
        device: device.function, dmaAddress: address.rawValue, size: size, direction: direction,
        forCPU: false,
        origin: origin(device, file, line, function)))
    guard let (start, bounce) = bounce(of: device, containing: address.rawValue, size: size) else { return }
    guard bounce.direction == .toDevice || bounce.direction == .bidirectional else { return }
    let offset = address.rawValue - start
    try? memory.copy(from: bounce.original + offset, to: bounce.slot + offset, count: size)
  }

  // MARK: Coherent memory

  /// dma_alloc_coherent: zeroed pages both the CPU and the device use without syncs. Private for an
  /// accepted device; otherwise made shared (set_memory_decrypted), since the device can reach
  /// nothing else — a failed conversion leaks the pages, as Linux does.
  public func allocCoherent(
    _ device: PCIDevice, size: Int, file: String = #fileID, line: Int = #line, function: String = #function
  ) throws(KernelError) -> CoherentBuffer {
    guard size > 0 else { throw KernelError(.EINVAL, "dma_alloc_coherent of \(size) bytes") }
    try refuseIfRevoked(device)
    let pages = (size + GuestMemory.pageSize - 1) / GuestMemory.pageSize
    let shared = !device.isAccepted
    if shared && !platform.hasSharedAlias {
      throw KernelError(.EIO, "\(device) is not accepted and the platform has no shared alias (X all ones)")
    }
    let limit = iommu == nil && !shared ? device.dmaMask &+ 1 : .max
    let gpa = try memory.allocatePages(pages, below: limit == 0 ? .max : limit)
    if shared {
      do throws(KernelError) { try memory.setMemoryDecrypted(gpa, pages: pages) } catch {
        record(.memoryLeaked(gpa: gpa, pages: pages, reason: error.message))
        throw error
      }
    }
    let address: DMAAddress
    do throws(KernelError) {
      address = try mapDirect(device, gpa, pages * GuestMemory.pageSize, .bidirectional, shared: shared)
    } catch {
      release(coherentPages: gpa, pages: pages, shared: shared)
      throw error
    }
    let buffer = CoherentBuffer(gpa: gpa, dmaAddress: address, size: size, shared: shared)
    device.coherent[address.rawValue] = buffer
    if debug.enabled {
      debug.recordMap(
        device: device.function, dmaAddress: address.rawValue, cpuAddress: gpa, size: size,
        direction: .bidirectional,
        kind: .coherent, sgCount: 0, origin: origin(device, file, line, function))
    }
    return buffer
  }

  /// dma_free_coherent.
  public func freeCoherent(
    _ device: PCIDevice, _ buffer: CoherentBuffer, file: String = #fileID, line: Int = #line,
    function: String = #function
  ) {
    report(
      debug.checkUnmap(
        device: device.function, dmaAddress: buffer.dmaAddress.rawValue, size: buffer.size,
        direction: .bidirectional,
        kind: .coherent, sgCount: 0, origin: origin(device, file, line, function)))
    guard let live = device.coherent.removeValue(forKey: buffer.dmaAddress.rawValue) else { return }
    releaseCoherent(device, live)
  }

  // MARK: Internals

  func origin(_ device: PCIDevice, _ file: String, _ line: Int, _ function: String) -> DMAOrigin {
    DMAOrigin(driver: device.driver?.name, file: file, line: line, function: function)
  }

  /// Runs a debug check only when the checks are on (its origin and messages cost time), and
  /// records what it reports.
  func report(_ reports: @autoclosure () -> [DMADebugReport]) {
    guard debug.enabled else { return }
    for report in reports() { record(.dmaDebug(report)) }
  }

  private func refuseIfRevoked(_ device: PCIDevice) throws(KernelError) {
    if case .revoked(let why) = device.trust {
      throw KernelError(.EIO, "\(device): mappings refused, trust revoked (\(why))")
    }
  }

  private func map(
    _ device: PCIDevice, _ gpa: UInt64, _ size: Int, _ direction: DMADirection, _ attributes: DMAAttributes
  ) throws(KernelError) -> DMAAddress {
    guard let dmaTrace else { return try choosePathAndMap(device, gpa, size, direction, attributes) }
    do throws(KernelError) {
      let address = try choosePathAndMap(device, gpa, size, direction, attributes)
      dmaTrace(
        DMATraceEvent(
          call: .map, device: device.function, gpa: gpa, address: address, size: size, direction: direction,
          path: path(of: device, address.rawValue), error: nil))
      return address
    } catch {
      dmaTrace(
        DMATraceEvent(
          call: .map, device: device.function, gpa: gpa, address: nil, size: size, direction: direction,
          path: "refused", error: error.errno))
      throw error
    }
  }

  /// How a mapping reaches memory, for the trace.
  private func path(of device: PCIDevice, _ address: UInt64) -> String {
    if device.bounces[address] != nil {
      return iommu == nil ? "bounced (shared alias)" : "bounced (IOVA, shared)"
    }
    if iommu != nil { return "IOVA" }
    return address >= platform.boundary ? "shared alias" : "private"
  }

  private func choosePathAndMap(
    _ device: PCIDevice, _ gpa: UInt64, _ size: Int, _ direction: DMADirection, _ attributes: DMAAttributes
  ) throws(KernelError) -> DMAAddress {
    guard size > 0, gpa < memory.size, UInt64(size) <= memory.size - gpa else {
      throw KernelError(.EINVAL, "DMA map of \(size) bytes at \(hex(gpa)) outside guest memory")
    }
    guard direction != .none else { throw KernelError(.EINVAL, "DMA map with direction none") }
    try refuseIfRevoked(device)
    if attributes.contains(.ccShared) {
      var page = gpa & ~UInt64(GuestMemory.pageSize - 1)
      while page < gpa + UInt64(size) {
        guard memory.isShared(page) else {
          throw KernelError(.EINVAL, "DMA_ATTR_CC_SHARED on private memory at \(hex(page))")
        }
        page += UInt64(GuestMemory.pageSize)
      }
      return try mapDirect(device, gpa, size, direction, shared: true)
    }
    if device.isAccepted { return try mapDirect(device, gpa, size, direction, shared: false) }
    return try mapBounce(device, gpa, size, direction, attributes)
  }

  /// A mapping of the buffer itself: its GPA (private) or shared alias without a vIOMMU, an IOVA of
  /// the device's DMA domain with one.
  func mapDirect(_ device: PCIDevice, _ gpa: UInt64, _ size: Int, _ direction: DMADirection, shared: Bool)
    throws(KernelError) -> DMAAddress
  {
    let end = UInt64(size) - 1
    if let iommu {
      var protection = Self.protection(direction)
      if shared { protection.insert(.shared) }
      let iova: IOVA
      do {
        iova = try iommu.core.dmaMap(
          device: device.bdf, physical: PhysicalAddress(gpa), size: UInt64(size), protection: protection)
      } catch { throw KernelError(error.errno, "\(device): \(error)") }
      guard iova.rawValue <= device.dmaMask, end <= device.dmaMask - iova.rawValue else {
        try? iommu.core.dmaUnmap(device: device.bdf, iova: iova, size: UInt64(size))
        throw KernelError(.EIO, "\(device): IOVA \(iova) is beyond the DMA mask \(hex(device.dmaMask))")
      }
      device.iommuMappings[iova.rawValue] = UInt64(size)
      return DMAAddress(iova.rawValue)
    }
    let address: UInt64
    if shared {
      guard platform.boundary != .max else {
        throw KernelError(.EIO, "\(device): shared memory has no device address (X is all ones)")
      }
      address = gpa + platform.boundary
    } else {
      guard gpa < platform.boundary, UInt64(size) <= platform.boundary - gpa else {
        throw KernelError(.EIO, "\(device): private \(hex(gpa)) is not below X = \(hex(platform.boundary))")
      }
      address = gpa
    }
    guard address <= device.dmaMask, end <= device.dmaMask - address else {
      throw KernelError(.EIO, "\(device): \(hex(address)) is beyond the DMA mask \(hex(device.dmaMask))")
    }
    return DMAAddress(address)
  }

  private func mapBounce(
    _ device: PCIDevice, _ gpa: UInt64, _ size: Int, _ direction: DMADirection, _ attributes: DMAAttributes
  ) throws(KernelError) -> DMAAddress {
    guard let swiotlb else {
      throw KernelError(.EIO, "\(device) is not accepted and there is no swiotlb pool to bounce through")
    }
    let slot: UInt64
    do { slot = try swiotlb.allocate(size: size) } catch {
      throw KernelError(error.code == .full ? .ENOMEM : .EINVAL, "swiotlb: \(error)")
    }
    if (direction == .toDevice || direction == .bidirectional) && !attributes.contains(.skipCPUSync) {
      do throws(KernelError) { try memory.copy(from: gpa, to: slot, count: size) } catch {
        try? swiotlb.free(slot, size: size)
        throw error
      }
    }
    let address: DMAAddress
    do throws(KernelError) { address = try mapDirect(device, slot, size, direction, shared: true) } catch {
      try? swiotlb.free(slot, size: size)
      throw error
    }
    var bounce = Bounce(original: gpa, slot: slot, size: size, direction: direction)
    if iommu != nil {
      bounce.iova = address.rawValue
      device.iommuMappings[address.rawValue] = nil
    }
    device.bounces[address.rawValue] = bounce
    return address
  }

  private func unmap(
    _ device: PCIDevice, _ address: UInt64, _ size: Int, _ direction: DMADirection,
    _ attributes: DMAAttributes
  ) {
    if let dmaTrace {
      dmaTrace(
        DMATraceEvent(
          call: .unmap, device: device.function, gpa: nil, address: DMAAddress(address), size: size,
          direction: direction, path: path(of: device, address), error: nil))
    }
    if let bounce = device.bounces.removeValue(forKey: address) {
      if (bounce.direction == .fromDevice || bounce.direction == .bidirectional)
        && !attributes.contains(.skipCPUSync) && !device.isRevoked
      {
        try? memory.copy(from: bounce.slot, to: bounce.original, count: min(size, bounce.size))
      }
      releaseBounce(device, bounce)
    } else if let mapped = device.iommuMappings.removeValue(forKey: address) {
      try? iommu?.core.dmaUnmap(device: device.bdf, iova: IOVA(address), size: mapped)
    }
  }

  private func releaseBounce(_ device: PCIDevice, _ bounce: Bounce) {
    if let iova = bounce.iova {
      try? iommu?.core.dmaUnmap(device: device.bdf, iova: IOVA(iova), size: UInt64(bounce.size))
    }
    try? swiotlb?.free(bounce.slot, size: bounce.size)
  }

  private func releaseCoherent(_ device: PCIDevice, _ buffer: CoherentBuffer) {
    if let mapped = device.iommuMappings.removeValue(forKey: buffer.dmaAddress.rawValue) {
      try? iommu?.core.dmaUnmap(device: device.bdf, iova: IOVA(buffer.dmaAddress.rawValue), size: mapped)
    }
    let pages = (buffer.size + GuestMemory.pageSize - 1) / GuestMemory.pageSize
    release(coherentPages: buffer.gpa, pages: pages, shared: buffer.shared)
  }

  /// Coherent pages back to the allocator, made private first; pages that cannot be made private
  /// again are leaked (never reused).
  private func release(coherentPages gpa: UInt64, pages: Int, shared: Bool) {
    if shared {
      do throws(KernelError) { try memory.setMemoryEncrypted(gpa, pages: pages) } catch {
        record(.memoryLeaked(gpa: gpa, pages: pages, reason: error.message))
        return
      }
    }
    memory.freePages(gpa, count: pages)
  }

  private func bounce(of device: PCIDevice, containing address: UInt64, size: Int) -> (UInt64, Bounce)? {
    if let exact = device.bounces[address] {
      // The sync must stay inside the bounce: more would copy private bytes into the shared pool
      // (or pool bytes over private memory past the buffer).
      return UInt64(size) <= UInt64(exact.size) ? (address, exact) : nil
    }
    return device.bounces.first { start, bounce in
      address > start && address - start < UInt64(bounce.size)
        && UInt64(size) <= UInt64(bounce.size) - (address - start)
    }.map { ($0.key, $0.value) }
  }

  /// What the driver left mapped when it went away: reported by the debug checks, then torn down
  /// (no bounce copies back: the data is the device's, not the driver's, any more).
  func tearDownMappings(of device: PCIDevice, driver: String) {
    report(debug.checkLeaks(device: device.function, driver: driver))
    for bounce in device.bounces.values { releaseBounce(device, bounce) }
    device.bounces.removeAll()
    for buffer in device.coherent.values { releaseCoherent(device, buffer) }
    device.coherent.removeAll()
    for (iova, size) in device.iommuMappings {
      try? iommu?.core.dmaUnmap(device: device.bdf, iova: IOVA(iova), size: size)
    }
    device.iommuMappings.removeAll()
  }

  /// dma_info_to_prot: what the device may do with the buffer.
  static func protection(_ direction: DMADirection) -> IOProtection {
    switch direction {
    case .toDevice: [.read]
    case .fromDevice: [.write]
    case .bidirectional, .none: [.read, .write]
    }
  }
}

extension PCIDevice {
  var isRevoked: Bool {
    if case .revoked = trust { return true }
    return false
  }
}

/// One DMA API call as the trace records it (issue 7: "DMA API calls" are records).
public struct DMATraceEvent: Hashable, Sendable, CustomStringConvertible {
  public enum Call: String, Hashable, Sendable {
    case map, unmap
  }
  public var call: Call
  public var device: RequesterID
  public var gpa: UInt64?
  public var address: DMAAddress?
  public var size: Int
  public var direction: DMADirection?
  /// How the mapping reaches memory: bounced, private, shared alias or IOVA ("refused" on error).
  public var path: String
  public var error: Errno?

  public var description: String {
    let target = address.map { "\($0)" } ?? "-"
    let source = gpa.map { " GPA 0x" + String($0, radix: 16) } ?? ""
    let outcome = error.map { " failed: \($0)" } ?? ""
    return
      "dma_\(call.rawValue) \(size) B\(source) → \(target) \(direction.map { "\($0)" } ?? "") \(path)\(outcome)"
  }
}
