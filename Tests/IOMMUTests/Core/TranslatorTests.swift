import IOMMU
import PCIe
import Testing

/// A translator resolved once for a burst gives exactly what `translate` (the IOTLB and the domain's
/// walk) gives for every request, including when it reads 4 KiB leaves straight from its cached
/// level-1 table.
@Suite struct TranslatorTests {
  @Test(arguments: [UInt64(1), 2, 3])
  func aBurstMatchesTranslateRequestByRequest(seed: UInt64) throws {
    let core = try IOMMUCore(tableMemory: try TablePagePool(maxPages: 4096))
    let bdf = BDF(bus: 3, device: 0, function: 1)
    try core.addDevice(DeviceDescription(bdf))
    let domain = try core.allocateDomain(.paging)
    try core.attachDevice(domain, to: bdf)
    var random = SplitMix64(state: seed)
    // 8 MiB of IOVA: random 4 KiB pages (random rights, some shared) and a few 2 MiB pages; holes between.
    let window: UInt64 = 8 << 20
    for region in stride(from: UInt64(0), to: window, by: 2 << 20) {
      if random.next() % 4 == 0 {
        try domain.map(
          IOVA(region), to: PhysicalAddress(0x4000_0000 + region), size: 2 << 20, protection: [.read, .write])
        continue
      }
      for page in stride(from: region, to: region + (2 << 20), by: 4096) where random.next() % 3 != 0 {
        let rights: [IOProtection] = [[.read], [.write], [.read, .write], [.read, .write, .shared]]
        try domain.map(
          IOVA(page), to: PhysicalAddress(0x8000_0000 + (random.next() % 4096) * 4096), size: 4096,
          protection: rights[Int(random.next() % 4)])
      }
    }
    var translator = try core.translator(device: bdf, pasid: nil).get()
    var compared = 0
    for page in stride(from: UInt64(0), to: window + 8192, by: 4096) {
      for access in [IOAccess.read, .write] {
        let iova = IOVA(page + random.next() % 4096)
        let burst = translator.translate(iova, access: access)
        let single = core.translate(device: bdf, pasid: nil, iova: iova, access: access)
        // And the table itself, walked with no cache at all.
        let walked = domain.translation(of: iova)
        if case .success(let translation) = burst { #expect(translation == walked, "\(iova)") }
        switch (burst, single) {
        case (.success(let a), .success(let b)): #expect(a == b, "\(iova) \(access)")
        case (.failure(let a), .failure(let b)): #expect(a.reason == b.reason, "\(iova) \(access)")
        default: Issue.record("\(iova) \(access): burst \(burst), single \(single)")
        }
        compared += 1
      }
    }
    #expect(compared == 2 * Int((window + 8192) / 4096))
    // Both paths recorded the same faults.
    let faults = core.drainFaults()
    #expect(faults.count % 2 == 0)
  }

  @Test func aBlockedDeviceGetsNoTranslator() throws {
    let core = try IOMMUCore(tableMemory: try TablePagePool(maxPages: 64))
    let bdf = BDF(bus: 3, device: 0, function: 1)
    try core.addDevice(DeviceDescription(bdf))
    let blocking = try core.blockingDomain(of: core.group(of: bdf)!)
    try core.attachDevice(blocking, to: bdf)
    guard case .failure(let refusal) = core.translator(device: bdf, pasid: nil) else {
      Issue.record("a blocked device must have no translator")
      return
    }
    #expect(refusal.reason == .blocked)
    #expect(
      core.translator(device: BDF(bus: 9, device: 0, function: 0), pasid: nil).failureReason == .unknownDevice
    )
  }
}

extension Result where Success == IOMMUCore.Translator, Failure == IOMMUCore.TranslatorRefusal {
  var failureReason: IOFaultReason? {
    if case .failure(let refusal) = self { return refusal.reason }
    return nil
  }
}

extension TranslatorTests {
  @Test func aTranslatorKeptAcrossAnUnmapThatFreesItsTableStaysCorrect() throws {
    let core = try IOMMUCore(tableMemory: try TablePagePool(maxPages: 64))
    let bdf = BDF(bus: 3, device: 0, function: 1)
    try core.addDevice(DeviceDescription(bdf))
    let domain = try core.allocateDomain(.paging)
    try core.attachDevice(domain, to: bdf)
    try domain.map(IOVA(0x20_0000), to: PhysicalAddress(0x1000_0000), size: 4096, protection: [.read])
    var translator = try core.translator(device: bdf, pasid: nil).get()
    #expect(
      try translator.translate(IOVA(0x20_0000), access: .read).get().physical == PhysicalAddress(0x1000_0000))
    // The only leaf goes, and its level-1 table with it; a new table elsewhere may reuse the page.
    _ = try domain.unmap(IOVA(0x20_0000), size: 4096)
    try domain.map(IOVA(0x4000_0000), to: PhysicalAddress(0x2000_0000), size: 4096, protection: [.read])
    guard case .failure(let fault) = translator.translate(IOVA(0x20_1000), access: .read) else {
      Issue.record("an unmapped IOVA must fault")
      return
    }
    #expect(fault.reason == .notMapped)
    #expect(
      try translator.translate(IOVA(0x4000_0000), access: .read).get().physical
        == PhysicalAddress(0x2000_0000))
  }
}
