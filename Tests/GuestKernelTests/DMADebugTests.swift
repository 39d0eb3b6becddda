import GuestKernel
import PCIe
import Testing

@Suite struct DMADebugTests {
  let nic = RequesterID(rawValue: 0x0100)
  let disk = RequesterID(rawValue: 0x0200)
  static let dma: UInt64 = 0x8000_1000
  static let cpu: UInt64 = 0x4_2000_0000
  static let file = "GuestKernelTests/DMADebugTests.swift"

  /// Maps one buffer and returns the origin recorded for it (its line is the caller's).
  @discardableResult
  func map(
    _ debug: DMADebug, device: RequesterID? = nil, dma: UInt64 = Self.dma, cpu: UInt64 = Self.cpu,
    size: Int = 4096, direction: DMADirection = .toDevice, kind: DMAMappingKind = .single, sgCount: Int = 0,
    line: Int = #line
  ) -> DMAOrigin {
    let origin = DMAOrigin(driver: "e1000", line: line)
    debug.recordMap(
      device: device ?? nic, dmaAddress: dma, cpuAddress: cpu, size: size, direction: direction, kind: kind,
      sgCount: sgCount, origin: origin)
    return origin
  }

  @Test func cleanSequencesReportNothing() {
    let debug = DMADebug()
    map(debug, size: 1500, direction: .toDevice)
    map(debug, dma: 0x9000_0000, cpu: 0x5_0000_0000, size: 8192, direction: .fromDevice, kind: .page)
    map(
      debug, dma: 0xA000_0000, cpu: 0x6_0000_0000, size: 4096, direction: .bidirectional,
      kind: .scatterGather,
      sgCount: 3)
    map(
      debug, device: disk, dma: Self.dma, cpu: 0x7_0000_0000, size: 4096, direction: .bidirectional,
      kind: .coherent)
    #expect(debug.liveMappingCount == 4)
    // The CPU may read what the device only reads, and share coherent memory freely.
    #expect(debug.checkCPUAccess(cpuAddress: Self.cpu, size: 1500, write: false, origin: DMAOrigin()).isEmpty)
    #expect(
      debug.checkCPUAccess(cpuAddress: 0x7_0000_0000, size: 64, write: true, origin: DMAOrigin()).isEmpty)
    // Receive: hand the buffer to the CPU, read it, give it back, and again.
    for _ in 0..<2 {
      #expect(
        debug.checkSync(
          device: nic, dmaAddress: 0x9000_0000, size: 8192, direction: .fromDevice, forCPU: true,
          origin: DMAOrigin()
        ).isEmpty)
      #expect(
        debug.checkCPUAccess(cpuAddress: 0x5_0000_0000, size: 8192, write: false, origin: DMAOrigin()).isEmpty
      )
      #expect(
        debug.checkSync(
          device: nic, dmaAddress: 0x9000_0000, size: 8192, direction: .fromDevice, forCPU: false,
          origin: DMAOrigin()
        ).isEmpty)
    }
    // A partial sync inside the mapping (dma_sync_single_range_for_cpu), any direction on a bidirectional one.
    #expect(
      debug.checkSync(
        device: nic, dmaAddress: 0xA000_0800, size: 0x800, direction: .toDevice, forCPU: true,
        origin: DMAOrigin()
      ).isEmpty)
    #expect(
      debug.checkUnmap(
        device: nic, dmaAddress: Self.dma, size: 1500, direction: .toDevice, kind: .single,
        origin: DMAOrigin()
      ).isEmpty)
    #expect(
      debug.checkUnmap(
        device: nic, dmaAddress: 0x9000_0000, size: 8192, direction: .fromDevice, kind: .page,
        origin: DMAOrigin()
      ).isEmpty)
    #expect(
      debug.checkUnmap(
        device: nic, dmaAddress: 0xA000_0000, size: 4096, direction: .bidirectional, kind: .scatterGather,
        sgCount: 3, origin: DMAOrigin()
      ).isEmpty)
    #expect(
      debug.checkUnmap(
        device: disk, dmaAddress: Self.dma, size: 4096, direction: .bidirectional, kind: .coherent,
        origin: DMAOrigin()
      ).isEmpty)
    #expect(debug.reports.isEmpty && debug.liveMappingCount == 0)
    #expect(debug.checkLeaks(device: nic, driver: "e1000").isEmpty)
  }

  @Test func unmapOfAnUnknownAddressIsNotMapped() {
    let debug = DMADebug()
    map(debug, device: disk)  // same address, other device
    let call = DMAOrigin(driver: "e1000")
    let reports = debug.checkUnmap(
      device: nic, dmaAddress: Self.dma, size: 4096, direction: .toDevice, kind: .single, origin: call)
    #expect(reports.count == 1)
    #expect(reports.first?.kind == .notMapped)
    #expect(reports.first?.device == nic && reports.first?.dmaAddress == Self.dma)
    #expect(reports.first?.mappingOrigin == nil)
    #expect(reports.first?.callOrigin == call)
    #expect(
      reports.first?.message
        == "device driver tries to free DMA memory it has not allocated [device address=0x0000000080001000] "
        + "[size=4096 bytes]")
    #expect(debug.reports == reports)
    #expect(debug.liveMappingCount == 1)
  }

  @Test func doubleUnmapNamesTheFirstUnmap() {
    let debug = DMADebug()
    let mapped = map(debug)
    let firstLine = #line + 1
    let first = DMAOrigin(driver: "e1000")
    debug.checkUnmap(
      device: nic, dmaAddress: Self.dma, size: 4096, direction: .toDevice, kind: .single, origin: first)
    #expect(debug.reports.isEmpty)
    let second = DMAOrigin(driver: "e1000")
    let reports = debug.checkUnmap(
      device: nic, dmaAddress: Self.dma, size: 4096, direction: .toDevice, kind: .single, origin: second)
    #expect(reports.map(\.kind) == [.doubleUnmap])
    #expect(reports.first?.mappingOrigin == mapped)
    #expect(reports.first?.mappingOrigin?.file == Self.file)
    #expect(reports.first?.mappingOrigin?.line == firstLine - 2)
    #expect(reports.first?.callOrigin == second)
    #expect(
      reports.first?.message
        == "device driver tries to free DMA memory it has already freed [device address=0x0000000080001000] "
        + "[size=4096 bytes] [first unmapped e1000 at \(Self.file):\(firstLine) in doubleUnmapNamesTheFirstUnmap()]"
    )
  }

  @Test func aRemappedAddressNamesItsLatestUnmap() {
    let debug = DMADebug()
    map(debug)
    debug.checkUnmap(
      device: nic, dmaAddress: Self.dma, size: 4096, direction: .toDevice, kind: .single, origin: DMAOrigin())
    let remapped = map(debug, size: 2048)
    let latest = DMAOrigin()
    debug.checkUnmap(
      device: nic, dmaAddress: Self.dma, size: 2048, direction: .toDevice, kind: .single, origin: latest)
    let reports = debug.checkUnmap(
      device: nic, dmaAddress: Self.dma, size: 2048, direction: .toDevice, kind: .single, origin: DMAOrigin())
    #expect(reports.map(\.kind) == [.doubleUnmap])
    #expect(reports.first?.mappingOrigin == remapped)
    #expect(reports.first?.message.hasSuffix("[first unmapped \(latest)]") == true)
  }

  @Test func theUnmapHistoryIsABoundedRing() {
    let debug = DMADebug(unmapHistory: 2)
    for page: UInt64 in 0..<3 {
      map(debug, dma: Self.dma + page * 4096)
      debug.checkUnmap(
        device: nic, dmaAddress: Self.dma + page * 4096, size: 4096, direction: .toDevice, kind: .single,
        origin: DMAOrigin())
    }
    // The oldest unmap has been forgotten; the two newest are remembered.
    let kinds = (0..<3).map { (page: UInt64) in
      debug.checkUnmap(
        device: nic, dmaAddress: Self.dma + page * 4096, size: 4096, direction: .toDevice, kind: .single,
        origin: DMAOrigin()
      ).first?.kind
    }
    #expect(kinds == [.notMapped, .doubleUnmap, .doubleUnmap])

    let forgetful = DMADebug(unmapHistory: 0)
    map(forgetful)
    for expected: DMADebugReport.Kind? in [nil, .notMapped] {
      let reports = forgetful.checkUnmap(
        device: nic, dmaAddress: Self.dma, size: 4096, direction: .toDevice, kind: .single,
        origin: DMAOrigin())
      #expect(reports.first?.kind == expected)
    }
  }

  @Test func unmapWithADifferentSizeIsReportedAndStillUnmaps() {
    let debug = DMADebug()
    let mapped = map(debug, size: 0x1000)
    let call = DMAOrigin()
    let reports = debug.checkUnmap(
      device: nic, dmaAddress: Self.dma, size: 0x800, direction: .toDevice, kind: .single, origin: call)
    #expect(reports.map(\.kind) == [.wrongSize])
    #expect(reports.first?.mappingOrigin == mapped && reports.first?.callOrigin == call)
    #expect(
      reports.first?.message
        == "device driver frees DMA memory with different size [device address=0x0000000080001000] "
        + "[map size=4096 bytes] [unmap size=2048 bytes]")
    #expect(debug.liveMappingCount == 0)
  }

  @Test func unmapWithADifferentDirectionIsReported() {
    let debug = DMADebug()
    let mapped = map(debug, direction: .fromDevice)
    let reports = debug.checkUnmap(
      device: nic, dmaAddress: Self.dma, size: 4096, direction: .toDevice, kind: .single, origin: DMAOrigin())
    #expect(reports.map(\.kind) == [.wrongDirection])
    #expect(reports.first?.mappingOrigin == mapped)
    #expect(
      reports.first?.message
        == "device driver frees DMA memory with different direction [device address=0x0000000080001000] "
        + "[size=4096 bytes] [mapped with DMA_FROM_DEVICE] [unmapped with DMA_TO_DEVICE]")
  }

  @Test func unmapThroughTheWrongFunctionIsReported() {
    let debug = DMADebug()
    let mapped = map(debug, kind: .page)
    let reports = debug.checkUnmap(
      device: nic, dmaAddress: Self.dma, size: 4096, direction: .toDevice, kind: .single, origin: DMAOrigin())
    #expect(reports.map(\.kind) == [.wrongKind])
    #expect(reports.first?.mappingOrigin == mapped)
    #expect(
      reports.first?.message
        == "device driver frees DMA memory with wrong function [device address=0x0000000080001000] "
        + "[size=4096 bytes] [mapped as page] [unmapped as single]")
  }

  @Test func unmapSGWithADifferentCountIsReportedInLinuxsOrder() {
    let debug = DMADebug()
    let mapped = map(debug, size: 4096, direction: .toDevice, kind: .scatterGather, sgCount: 4)
    let reports = debug.checkUnmap(
      device: nic, dmaAddress: Self.dma, size: 2048, direction: .fromDevice, kind: .scatterGather, sgCount: 3,
      origin: DMAOrigin())
    // check_unmap's order: size, function, sg count, direction.
    #expect(reports.map(\.kind) == [.wrongSize, .wrongSGCount, .wrongDirection])
    #expect(reports.allSatisfy { $0.mappingOrigin == mapped })
    #expect(
      reports[1].message
        == "device driver frees DMA sg list with different entry count [map count=4] [unmap count=3]"
    )
    #expect(debug.reports == reports)
  }

  @Test func syncOutsideTheMappingIsOutOfRange() {
    let debug = DMADebug()
    let mapped = map(debug, size: 0x2000, direction: .bidirectional)
    let call = DMAOrigin()
    let reports = debug.checkSync(
      device: nic, dmaAddress: Self.dma + 0x1000, size: 0x1800, direction: .bidirectional, forCPU: true,
      origin: call)
    #expect(reports.map(\.kind) == [.syncOutOfRange])
    #expect(reports.first?.dmaAddress == Self.dma + 0x1000)
    #expect(reports.first?.mappingOrigin == mapped && reports.first?.callOrigin == call)
    #expect(
      reports.first?.message
        == "device driver syncs DMA memory outside allocated range [device address=0x0000000080001000] "
        + "[allocation size=8192 bytes] [sync offset+size=10240]")
    // From the mapping's start too.
    let fromStart = debug.checkSync(
      device: nic, dmaAddress: Self.dma, size: 0x2001, direction: .bidirectional, forCPU: false, origin: call)
    #expect(fromStart.map(\.kind) == [.syncOutOfRange])
  }

  @Test func syncOfNoMappingIsNotMapped() {
    let debug = DMADebug()
    map(debug, size: 0x2000)
    let call = DMAOrigin()
    for (device, address) in [(nic, Self.dma - 1), (nic, Self.dma + 0x2000), (disk, Self.dma)] {
      let reports = debug.checkSync(
        device: device, dmaAddress: address, size: 16, direction: .toDevice, forCPU: false, origin: call)
      #expect(reports.map(\.kind) == [.notMapped])
      #expect(reports.first?.mappingOrigin == nil && reports.first?.callOrigin == call)
    }
    #expect(
      debug.reports.last?.message
        == "device driver tries to sync DMA memory it has not allocated [device address=0x0000000080001000] "
        + "[size=16 bytes]")
  }

  @Test func syncWithAnotherDirectionIsReportedUnlessBidirectional() {
    let debug = DMADebug()
    let mapped = map(debug, direction: .toDevice)
    let reports = debug.checkSync(
      device: nic, dmaAddress: Self.dma, size: 4096, direction: .fromDevice, forCPU: true, origin: DMAOrigin()
    )
    #expect(reports.map(\.kind) == [.syncWrongDirection])
    #expect(reports.first?.mappingOrigin == mapped)
    #expect(
      reports.first?.message
        == "device driver syncs DMA memory with different direction [device address=0x0000000080001000] "
        + "[size=4096 bytes] [mapped with DMA_TO_DEVICE] [synced with DMA_FROM_DEVICE]")
    map(debug, dma: 0x9000_0000, cpu: 0x5_0000_0000, direction: .bidirectional)
    for direction in [DMADirection.toDevice, .fromDevice, .bidirectional] {
      #expect(
        debug.checkSync(
          device: nic, dmaAddress: 0x9000_0000, size: 4096, direction: direction, forCPU: true,
          origin: DMAOrigin()
        ).isEmpty)
    }
  }

  @Test func ownershipFollowsTheSyncs() {
    let debug = DMADebug()
    let mapped = map(debug, size: 4096, direction: .fromDevice)
    #expect(debug.liveMappings(of: nic).map(\.owner) == [.device])
    // The device owns a receive buffer from the map: the CPU must not even read it.
    let read = DMAOrigin()
    let early = debug.checkCPUAccess(cpuAddress: Self.cpu + 16, size: 16, write: false, origin: read)
    #expect(early.map(\.kind) == [.cpuAccessWhileDeviceOwned])
    #expect(early.first?.device == nic && early.first?.dmaAddress == Self.dma)
    #expect(early.first?.mappingOrigin == mapped && early.first?.callOrigin == read)
    #expect(
      early.first?.message
        == "cpu reads DMA memory owned by the device [cpu address=0x0000000420000010] [size=16 bytes] "
        + "[device address=0x0000000080001000] [mapped with DMA_FROM_DEVICE]")

    debug.checkSync(
      device: nic, dmaAddress: Self.dma, size: 4096, direction: .fromDevice, forCPU: true, origin: DMAOrigin()
    )
    #expect(debug.liveMappings(of: nic).map(\.owner) == [.cpu])
    #expect(debug.checkCPUAccess(cpuAddress: Self.cpu, size: 4096, write: false, origin: DMAOrigin()).isEmpty)
    #expect(debug.checkCPUAccess(cpuAddress: Self.cpu, size: 4096, write: true, origin: DMAOrigin()).isEmpty)

    debug.checkSync(
      device: nic, dmaAddress: Self.dma, size: 4096, direction: .fromDevice, forCPU: false,
      origin: DMAOrigin())
    #expect(debug.liveMappings(of: nic).map(\.owner) == [.device])
    let late = debug.checkCPUAccess(cpuAddress: Self.cpu + 4095, size: 1, write: true, origin: DMAOrigin())
    #expect(late.map(\.kind) == [.cpuAccessWhileDeviceOwned])
    #expect(late.first?.message.hasPrefix("cpu writes DMA memory owned by the device") == true)
    #expect(debug.reports.count == 2)
  }

  @Test func cpuAccessChecksOnlyOverlappingDeviceOwnedStreamingBuffers() {
    let debug = DMADebug()
    map(debug, dma: 0x1000, cpu: 0x10_0000, size: 4096, direction: .toDevice)
    map(debug, dma: 0x2000, cpu: 0x10_1000, size: 4096, direction: .bidirectional)
    map(debug, dma: 0x3000, cpu: 0x10_2000, size: 4096, direction: .bidirectional, kind: .coherent)
    let origin = DMAOrigin()
    // Adjacent, not overlapping.
    #expect(debug.checkCPUAccess(cpuAddress: 0xF_F000, size: 4096, write: true, origin: origin).isEmpty)
    #expect(debug.checkCPUAccess(cpuAddress: 0x10_3000, size: 4096, write: true, origin: origin).isEmpty)
    // Reading what the device only reads is fine; reading a bidirectional buffer is not.
    #expect(debug.checkCPUAccess(cpuAddress: 0x10_0000, size: 4096, write: false, origin: origin).isEmpty)
    #expect(
      debug.checkCPUAccess(cpuAddress: 0x10_0800, size: 4096, write: false, origin: origin).map(\.dmaAddress)
        == [0x2000])
    // A write across both streaming buffers and the coherent one: two reports, by DMA address.
    #expect(
      debug.checkCPUAccess(cpuAddress: 0x10_0000, size: 3 * 4096, write: true, origin: origin).map(
        \.dmaAddress)
        == [0x1000, 0x2000])
    #expect(debug.checkCPUAccess(cpuAddress: 0x10_0000, size: 0, write: true, origin: origin).isEmpty)
  }

  @Test func leaksAreReportedOnceAndForgotten() {
    let debug = DMADebug()
    let second = map(debug, dma: 0x2000, cpu: 0x20_0000, size: 512, direction: .fromDevice, kind: .page)
    let first = map(debug, dma: 0x1000, cpu: 0x10_0000, size: 4096, direction: .toDevice)
    let other = map(debug, device: disk, dma: 0x1000, cpu: 0x30_0000)
    let reports = debug.checkLeaks(device: nic, driver: "e1000")
    #expect(reports.map(\.kind) == [.leaked, .leaked])
    #expect(reports.map(\.dmaAddress) == [0x1000, 0x2000])
    #expect(reports.map(\.mappingOrigin) == [first, second])
    #expect(reports.allSatisfy { $0.callOrigin == nil && $0.device == nic })
    #expect(
      reports[1].message
        == "device driver has pending DMA allocations while released from device [driver=e1000] [count=2] "
        + "[device address=0x0000000000002000] [size=512 bytes] [mapped with DMA_FROM_DEVICE] [mapped as page]"
    )
    #expect(debug.liveMappings(of: nic).isEmpty)
    #expect(debug.checkLeaks(device: nic, driver: "e1000").isEmpty)
    #expect(debug.reports.count == 2)
    #expect(debug.liveMappings(of: disk).map(\.origin) == [other])
    #expect(debug.liveMappingCount == 1)
  }

  @Test func sameAddressMappedTwiceIsMatchedByBestFit() {
    let debug = DMADebug()
    // Without an IOMMU, mapping one buffer twice gives the same DMA address twice.
    map(debug, size: 4096, direction: .toDevice)
    map(debug, size: 2048, direction: .fromDevice)
    #expect(debug.liveMappings(of: nic).count == 2)
    // Several at the address and none fits exactly: Linux cannot tell which was meant.
    let ambiguous = debug.checkUnmap(
      device: nic, dmaAddress: Self.dma, size: 1024, direction: .toDevice, kind: .single, origin: DMAOrigin())
    #expect(ambiguous.map(\.kind) == [.notMapped])
    #expect(
      debug.checkUnmap(
        device: nic, dmaAddress: Self.dma, size: 2048, direction: .fromDevice, kind: .single,
        origin: DMAOrigin()
      ).isEmpty)
    // The CPU now owns neither by sync, but only the remaining to-device one is left, which it may read.
    #expect(debug.checkCPUAccess(cpuAddress: Self.cpu, size: 64, write: false, origin: DMAOrigin()).isEmpty)
    #expect(
      debug.checkUnmap(
        device: nic, dmaAddress: Self.dma, size: 4096, direction: .toDevice, kind: .single,
        origin: DMAOrigin()
      ).isEmpty)
    #expect(debug.liveMappingCount == 0)
  }

  @Test func disabledRecordsAndReportsNothing() {
    let debug = DMADebug(enabled: false)
    map(debug)
    #expect(debug.liveMappingCount == 0 && debug.liveMappings(of: nic).isEmpty)
    #expect(
      debug.checkUnmap(
        device: nic, dmaAddress: 0xDEAD_0000, size: 1, direction: .none, kind: .coherent, origin: DMAOrigin()
      ).isEmpty)
    #expect(
      debug.checkSync(
        device: nic, dmaAddress: 0xDEAD_0000, size: 1, direction: .none, forCPU: true, origin: DMAOrigin()
      ).isEmpty)
    #expect(debug.checkCPUAccess(cpuAddress: Self.cpu, size: 4096, write: true, origin: DMAOrigin()).isEmpty)
    #expect(debug.checkLeaks(device: nic, driver: nil).isEmpty)
    #expect(debug.reports.isEmpty)
    // Enabled later, it has no record of the mapping made while it was off.
    debug.enabled = true
    let reports = debug.checkUnmap(
      device: nic, dmaAddress: Self.dma, size: 4096, direction: .toDevice, kind: .single, origin: DMAOrigin())
    #expect(reports.map(\.kind) == [.notMapped])
  }

  @Test func drainReportsHandsOverAndForgets() {
    let debug = DMADebug()
    debug.checkUnmap(
      device: nic, dmaAddress: 1, size: 1, direction: .toDevice, kind: .single, origin: DMAOrigin())
    debug.checkSync(
      device: nic, dmaAddress: 1, size: 1, direction: .toDevice, forCPU: true, origin: DMAOrigin())
    #expect(debug.drainReports().map(\.kind) == [.notMapped, .notMapped])
    #expect(debug.reports.isEmpty && debug.drainReports().isEmpty)
  }

  @Test func descriptionsReadLikeTheKernelsWarnings() {
    let debug = DMADebug()
    let mapped = map(debug, size: 4096)
    let call = DMAOrigin(driver: "e1000")
    let report = debug.checkUnmap(
      device: nic, dmaAddress: Self.dma, size: 2048, direction: .toDevice, kind: .single, origin: call)[0]
    #expect(
      report.description
        == "DMA-API: e1000 \(nic): \(report.message); called \(call); mapped \(mapped)")
    #expect(
      call.description == "e1000 at \(Self.file):\(call.line) in descriptionsReadLikeTheKernelsWarnings()")
    #expect(DMAOrigin(file: "A.swift", line: 7, function: "f()").description == "at A.swift:7 in f()")
    #expect(
      [DMADirection.bidirectional, .toDevice, .fromDevice, .none].map(\.description)
        == ["DMA_BIDIRECTIONAL", "DMA_TO_DEVICE", "DMA_FROM_DEVICE", "DMA_NONE"])
    #expect(
      [DMAMappingKind.single, .page, .scatterGather, .coherent].map(\.description)
        == ["single", "page", "scatter-gather", "coherent"])
  }
}
