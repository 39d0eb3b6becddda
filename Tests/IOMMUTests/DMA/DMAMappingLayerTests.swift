import IOMMU
import Testing

@Suite struct DMAMappingLayerTests {
  static let fourGiB: UInt64 = 1 << 32
  static let msiWindow = IOVA(0xFEE0_0000)..<IOVA(0xFEF0_0000)
  let domain = DomainID(rawValue: 3)

  func make(
    _ mode: DMAMappingLayer.InvalidationMode, aperture: Range<IOVA> = IOVA(0)..<IOVA(1 << 48),
    dmaLimit: IOVA = IOVA(1 << 48), table: FaultInjectingPageTable = FaultInjectingPageTable(),
    tlb: IOTLB = IOTLB(capacity: 256)
  ) throws -> DMAMappingLayer {
    try DMAMappingLayer(
      domainID: domain, pageTable: table, iotlb: tlb, mode: mode, aperture: aperture,
      reserved: [Self.msiWindow],
      dmaLimit: dmaLimit)
  }

  @Test func mapKeepsTheOffsetAndMapsEveryPage() throws {
    let table = FaultInjectingPageTable()
    let layer = try make(.strict, table: table)
    let iova = try layer.map(physical: PhysicalAddress(0x1234_5678), size: 0x2000, protection: .read)
    #expect(iova.rawValue & 0xFFF == 0x678)
    #expect(iova.rawValue < Self.fourGiB)  // 32-bit first
    // 0x678 + 0x2000 spans three pages, rounded to a four-page (power-of-two) IOVA block.
    #expect(table.mappedBytes == 3 * 4096)
    #expect(layer.translate(iova)?.physical == PhysicalAddress(0x1234_5678))
    #expect(layer.translate(iova.advanced(by: 0x1FFF))?.physical == PhysicalAddress(0x1234_7677))
    #expect(layer.translate(iova)?.protection == .read)
    #expect(layer.liveMappings == 1 && layer.mappedBytes == 3 * 4096)
    try layer.unmap(iova: iova, size: 0x2000)
    #expect(table.mappedBytes == 0 && layer.liveMappings == 0)
  }

  @Test func strictUnmapLeavesNoStaleTranslation() throws {
    let table = FaultInjectingPageTable()
    let tlb = IOTLB(capacity: 256)
    let layer = try make(.strict, table: table, tlb: tlb)
    let iova = try layer.map(physical: PhysicalAddress(0x4000_0000), size: 4 * 4096, protection: .readWrite)
    // The device touches every page, filling the IOTLB, also through a PASID sharing the domain.
    for page: UInt64 in 0..<4 {
      _ = layer.translate(iova.advanced(by: page * 4096))
      _ = layer.translate(iova.advanced(by: page * 4096), pasid: PASID(9))
    }
    #expect(tlb.count == 8)
    try layer.unmap(iova: iova, size: 4 * 4096)
    for page: UInt64 in 0..<4 {
      let address = iova.advanced(by: page * 4096)
      #expect(tlb.lookup(domain: domain, pasid: .noPASID, iova: address) == nil)
      #expect(tlb.lookup(domain: domain, pasid: PASID(9), iova: address) == nil)
      #expect(table.translate(address) == nil)
      #expect(layer.translate(address) == nil)
    }
    #expect(layer.statistics.syncInvalidations == 1)
    // Reuse is now safe and happens: the next map of the same size gets the same IOVA back.
    let again = try layer.map(physical: PhysicalAddress(0x8000_0000), size: 4 * 4096, protection: .read)
    #expect(again == iova)
    #expect(layer.translate(again)?.physical == PhysicalAddress(0x8000_0000))
  }

  @Test func strictGatherRecordsLargeLeaves() throws {
    let table = FaultInjectingPageTable()
    let tlb = IOTLB(capacity: 64)
    let layer = try make(.strict, table: table, tlb: tlb)
    let iova = try layer.map(physical: PhysicalAddress(0x4000_0000), size: 1 << 21, protection: .read)
    #expect(iova.rawValue % (1 << 21) == 0)
    #expect(layer.translate(iova.advanced(by: 0x1234))?.pageSize == .size2M)
    #expect(tlb.entries(of: .size2M) == 1)
    try layer.unmap(iova: iova, size: 1 << 21)
    #expect(tlb.count == 0)
    #expect(layer.translate(iova.advanced(by: 0x1234)) == nil)
  }

  @Test func lazyReuseWaitsForAFlushThatBeganAfterTheUnmap() throws {
    let tlb = IOTLB(capacity: 256)
    let layer = try make(.lazy(queueCapacity: 16), tlb: tlb)
    let first = try layer.map(physical: PhysicalAddress(0x10_0000), size: 4096, protection: .read)
    _ = layer.translate(first)
    // A flush begins "concurrently" — before the unmap — and finishes after it.
    layer.beginFlush()
    // A device walk racing with that flush re-fills the IOTLB after its invalidation went out.
    _ = layer.translate(first)
    try layer.unmap(iova: first, size: 4096)
    // Lazy mode's accepted window: the stale entry may still translate, to the unmapped buffer only.
    #expect(tlb.lookup(domain: domain, pasid: .noPASID, iova: first)?.physical == PhysicalAddress(0x10_0000))
    layer.finishFlush()
    #expect(layer.flushQueue?.count == 1)
    let second = try layer.map(physical: PhysicalAddress(0x20_0000), size: 4096, protection: .read)
    #expect(second != first, "reused before a flush that began after its unmap had finished")
    // A fresh flush covers it; now it may be reused (and is: the magazine hands it back first).
    layer.flush()
    #expect(layer.flushQueue?.isEmpty == true)
    #expect(tlb.lookup(domain: domain, pasid: .noPASID, iova: first) == nil)
    let third = try layer.map(physical: PhysicalAddress(0x30_0000), size: 4096, protection: .read)
    #expect(third == first)
    #expect(layer.translate(third)?.physical == PhysicalAddress(0x30_0000))
  }

  @Test(arguments: [UInt64(5), 77])
  func lazyNeverReusesAnUncoveredIOVA(seed: UInt64) throws {
    // Random maps, unmaps, flush begins and finishes; every map must avoid IOVAs whose unmap no
    // finished flush that began after it covers.
    var rng = SplitMix64(seed: seed)
    let layer = try make(
      .lazy(queueCapacity: 8), aperture: IOVA(0)..<IOVA(64 * 4096), dmaLimit: IOVA(64 * 4096))
    var live: [IOVA] = []
    var pending: [(iova: IOVA, startCount: Int)] = []  // unmapped, not yet covered
    var starts = 0
    var finishes = 0
    for _ in 0..<3000 {
      switch rng.next() % 10 {
      case 0..<4:
        guard let iova = try? layer.map(physical: PhysicalAddress(0x1000), size: 4096, protection: .read)
        else {
          continue
        }
        #expect(!pending.contains { $0.iova == iova }, "an uncovered IOVA was handed out again")
        live.append(iova)
      case 4..<8 where !live.isEmpty:
        let iova = live.remove(at: Int(rng.next() % UInt64(live.count)))
        let forcedBefore = layer.statistics.forcedFlushes
        try layer.unmap(iova: iova, size: 4096)
        let forced = layer.statistics.forcedFlushes - forcedBefore
        starts += forced
        finishes += forced
        pending.removeAll { $0.startCount < finishes }
        pending.append((iova, starts))
      case 8:
        layer.beginFlush()
        starts += 1
      default:
        if finishes < starts {
          layer.finishFlush()
          finishes += 1
          pending.removeAll { $0.startCount < finishes }
        }
      }
    }
    #expect(layer.liveMappings == live.count)
  }

  @Test func aFullQueueForcesAFlush() throws {
    let layer = try make(.lazy(queueCapacity: 4))
    var iovas: [IOVA] = []
    for index: UInt64 in 0..<6 {
      iovas.append(try layer.map(physical: PhysicalAddress(index << 12), size: 4096, protection: .read))
    }
    for iova in iovas { try layer.unmap(iova: iova, size: 4096) }
    #expect(layer.statistics.forcedFlushes == 1)
    #expect(layer.flushQueue?.count == 2)
    #expect(layer.flushQueue?.released == 4)
  }

  @Test func thirtyTwoBitFirstThenUpToTheLimit() throws {
    // Aperture [4 GiB − 16 KiB, 1 TiB): four pages fit below 4 GiB.
    let layer = try make(
      .strict, aperture: IOVA(Self.fourGiB - 4 * 4096)..<IOVA(1 << 40), dmaLimit: IOVA(1 << 40))
    for _ in 0..<4 {
      let iova = try layer.map(physical: PhysicalAddress(0x1000), size: 4096, protection: .read)
      #expect(iova.rawValue < Self.fourGiB)
    }
    let high = try layer.map(physical: PhysicalAddress(0x1000), size: 4096, protection: .read)
    #expect(high.rawValue == (1 << 40) - 4096)
    #expect(layer.statistics.highAllocations == 1)
    #expect(!layer.tryBelow4GiBFirst)
    // A device limited to 32 bits never gets a high IOVA: the aperture below 4 GiB is full.
    let narrow = try make(
      .strict, aperture: IOVA(Self.fourGiB - 4096)..<IOVA(1 << 40), dmaLimit: IOVA(Self.fourGiB))
    _ = try narrow.map(physical: PhysicalAddress(0x1000), size: 4096, protection: .read)
    do {
      _ = try narrow.map(physical: PhysicalAddress(0x1000), size: 4096, protection: .read)
      Issue.record("mapped beyond the DMA limit")
    } catch {
      #expect(error.errno == .ENOMEM)
    }
  }

  @Test func reservedWindowIsNeverUsed() throws {
    let layer = try make(
      .strict, aperture: IOVA(0xFEC0_0000)..<IOVA(0xFF00_0000), dmaLimit: IOVA(0xFF00_0000))
    var count = 0
    while let iova = try? layer.map(physical: PhysicalAddress(0x1000), size: 4096, protection: .read) {
      #expect(!Self.msiWindow.contains(iova))
      count += 1
    }
    #expect(count == (0x40_0000 - 0x10_0000) / 4096)
  }

  @Test func aFailedMapLeaksNoIOVA() throws {
    let table = FaultInjectingPageTable()
    let layer = try make(.strict, table: table)
    table.failNextMap = IOMMUError(.ENOMEM, "table pages exhausted")
    do {
      _ = try layer.map(physical: PhysicalAddress(0x1000), size: 8192, protection: .read)
      Issue.record("map succeeded")
    } catch {
      #expect(error.errno == .ENOMEM)
    }
    #expect(layer.allocator.liveAllocations == 0)
    #expect(layer.liveMappings == 0 && layer.statistics.failedMaps == 1)
    // The IOVA it would have used is handed out next.
    let iova = try layer.map(physical: PhysicalAddress(0x1000), size: 8192, protection: .read)
    #expect(iova.rawValue == Self.fourGiB - 8192)
  }

  @Test(arguments: [DMAMappingLayer.InvalidationMode.strict, .lazy(queueCapacity: 4)])
  func badUnmapsAreEINVALAndChangeNothing(mode: DMAMappingLayer.InvalidationMode) throws {
    let table = FaultInjectingPageTable()
    let layer = try make(mode, table: table)
    let iova = try layer.map(physical: PhysicalAddress(0x5000), size: 4096, protection: .read)
    for (address, size) in [
      (IOVA(0x7000), UInt64(4096)), (iova, 0), (iova, 3 * 4096), (iova.advanced(by: 4096), 4096),
    ] {
      do {
        try layer.unmap(iova: address, size: size)
        Issue.record("unmap(\(address), \(size)) accepted")
      } catch {
        #expect(error.errno == .EINVAL)
      }
    }
    #expect(table.mappedBytes == 4096 && layer.liveMappings == 1)
    try layer.unmap(iova: iova, size: 4096)
    do {
      try layer.unmap(iova: iova, size: 4096)
      Issue.record("double unmap accepted")
    } catch {
      #expect(error.errno == .EINVAL)
    }
    #expect(layer.liveMappings == 0)
  }

  @Test func badArgumentsAreEINVAL() throws {
    #expect(throws: IOMMUError.self) { _ = try self.make(.strict, aperture: IOVA(0)..<IOVA(4096)) }
    #expect(throws: IOMMUError.self) { _ = try self.make(.lazy(queueCapacity: 0)) }
    let layer = try make(.strict)
    for (physical, size) in [
      (UInt64(0x1000), UInt64(0)), (UInt64.max - 10, UInt64(100)), (0x1000, UInt64.max),
    ] {
      do {
        _ = try layer.map(physical: PhysicalAddress(physical), size: size, protection: .read)
        Issue.record("map(\(physical), \(size)) accepted")
      } catch {
        #expect(error.errno == .EINVAL)
      }
    }
    #expect(layer.allocator.liveAllocations == 0)
  }
}
