import GuestABI
import HostPlatform
import IOMMU
import PCIe
import TDISP
import Testing

/// A guest with a vIOMMU: its stage-1 tables live in its own private memory, the device's DMA is
/// translated by the platform's nested walk of them, and the vIOMMU's cache changes only when the
/// guest invalidates (issue 5 "Done when").
@Suite struct VIOMMUPlatformTests {
  /// The guest's side of its I/O page tables: table pages handed out from a GPA pool in its own
  /// memory, entries read and written with its CPU (so through the platform's checks).
  final class GuestTables: IOTableMemory {
    let vmm: VMM
    let guest: GuestID
    var next: UInt64

    init(vmm: VMM, guest: GuestID, pool: UInt64) {
      self.vmm = vmm
      self.guest = guest
      next = pool
    }

    func allocateTablePage() -> PhysicalAddress? {
      let gpa = next
      next += 4096
      try? vmm.guestWrite(guest, gpa: gpa, bytes: [UInt8](repeating: 0, count: 4096))
      return PhysicalAddress(gpa)
    }
    func freeTablePage(_ page: PhysicalAddress) {}
    func loadEntry(_ address: PhysicalAddress) -> UInt64 {
      let bytes = (try? vmm.guestRead(guest, gpa: address.rawValue, count: 8)) ?? []
      return bytes.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }
    func storeEntry(_ value: UInt64, at address: PhysicalAddress) {
      try? vmm.guestWrite(
        guest, gpa: address.rawValue, bytes: (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) })
    }
  }

  typealias Platform = TrustedDMATests.Platform
  static let domain = DomainID(rawValue: 7)
  static let pattern: [UInt8] = (0..<256).map { UInt8(255 - $0) }

  func setUp() throws -> (Platform, RadixIOPageTable) {
    let platform = try Platform(viommu: true)
    try platform.accept()
    let tables = GuestTables(vmm: platform.vmm, guest: platform.guest.id, pool: 0x80000)
    let table = try RadixIOPageTable(memory: tables)
    try table.map(IOVA(0x3000_0000), to: PhysicalAddress(0x1000), size: 4096, protection: [.read, .write])
    try table.map(IOVA(0x1000_0000), to: PhysicalAddress(0x10000), size: 4096, protection: [.read])
    try table.map(IOVA(0x2000_0000), to: PhysicalAddress(0x20000), size: 4096, protection: [.read, .write])
    try platform.vmm.viommuCommand(
      platform.guest.id,
      .attach(
        requester: Platform.function, pasid: nil, domain: Self.domain, root: table.root, inputAddressBits: 48)
    )
    return (platform, table)
  }

  func run(_ platform: Platform, slot: Int) throws {
    let guest = platform.guest.id
    try platform.vmm.guestWrite(
      guest, gpa: 0x1000 + UInt64(32 * slot),
      bytes: CoveDMAEngine.Descriptor(source: 0x1000_0000, destination: 0x2000_0000, length: 256).bytes)
    _ = try platform.vmm.mmio(
      guest, function: Platform.function, address: platform.bar + 0x158, write: UInt32((slot + 1) % 4))
  }

  @Test func dmaGoesThroughTheGuestsOwnTablesAndStaleEntriesLastUntilInvalidated() throws {
    let (platform, table) = try setUp()
    let guest = platform.guest.id
    try platform.vmm.guestWrite(guest, gpa: 0x10000, bytes: Self.pattern)
    // Ring at IOVA 0x3000_0000 (GPA 0x1000): queue registers, then descriptor 0.
    try platform.copy(
      ring: 0x3000_0000, ringGPA: 0x1000,
      CoveDMAEngine.Descriptor(source: 0x1000_0000, destination: 0x2000_0000, length: 256))
    #expect(platform.iommu.faults.isEmpty)
    #expect(try platform.vmm.guestRead(guest, gpa: 0x20000, count: 256) == Self.pattern)
    let walks = platform.guest.viommu!.stage1Walks

    // The guest points IOVA 0x2000_0000 at GPA 0x30000 but does not invalidate: the vIOMMU keeps
    // using its cached translation, so the next copy still lands in GPA 0x20000.
    _ = try table.unmap(IOVA(0x2000_0000), size: 4096)
    try table.map(IOVA(0x2000_0000), to: PhysicalAddress(0x30000), size: 4096, protection: [.read, .write])
    try platform.vmm.guestWrite(guest, gpa: 0x20000, bytes: [UInt8](repeating: 0, count: 256))
    try run(platform, slot: 1)
    #expect(try platform.vmm.guestRead(guest, gpa: 0x20000, count: 256) == Self.pattern)
    #expect(try platform.vmm.guestRead(guest, gpa: 0x30000, count: 4) == [0, 0, 0, 0])
    #expect(platform.guest.viommu!.stage1Walks == walks)

    // An invalidation of another range changes nothing; the matching one does.
    try platform.vmm.viommuCommand(
      guest, .invalidateRange(domain: Self.domain, pasid: nil, iova: IOVA(0x4000_0000), size: 4096))
    try platform.vmm.guestWrite(guest, gpa: 0x20000, bytes: [UInt8](repeating: 0, count: 256))
    try run(platform, slot: 2)
    #expect(try platform.vmm.guestRead(guest, gpa: 0x20000, count: 256) == Self.pattern)
    try platform.vmm.viommuCommand(
      guest, .invalidateRange(domain: Self.domain, pasid: nil, iova: IOVA(0x2000_0000), size: 4096))
    try run(platform, slot: 3)
    #expect(try platform.vmm.guestRead(guest, gpa: 0x30000, count: 256) == Self.pattern)
    #expect(platform.iommu.faults.isEmpty)
  }

  @Test func aWriteThroughAReadOnlyGuestEntryFaultsInTheVIOMMU() throws {
    let (platform, _) = try setUp()
    try platform.copy(
      ring: 0x3000_0000, ringGPA: 0x1000,
      CoveDMAEngine.Descriptor(source: 0x2000_0000, destination: 0x1000_0000, length: 16))
    #expect(platform.iommu.faults.map(\.reason) == [.translation("permission")])
    #expect(platform.guest.viommu!.drainFaults().count == 1)
    // The refused request was the TDI's: ERROR.
    #expect(platform.device.tdisp.tdi(Platform.function)?.state == .error)
  }

  @Test func aSharedGuestEntryDoesNotMakeAPrivatePageReachableWithT0() throws {
    let (platform, table) = try setUp()
    // The guest marks IOVA 0x5000_0000 shared but points it at a page it never converted.
    try table.map(
      IOVA(0x5000_0000), to: PhysicalAddress(0x50000), size: 4096, protection: [.read, .write, .shared])
    try platform.copy(
      ring: 0x3000_0000, ringGPA: 0x1000,
      CoveDMAEngine.Descriptor(
        source: 0x1000_0000, destination: 0x5000_0000, length: 16, flags: .destinationT0))
    #expect(platform.iommu.faults.map(\.reason) == [.tZeroToPrivate])
  }

  @Test func aPageATrustedDeviceMapsPrivateCannotBeConverted() throws {
    let (platform, table) = try setUp()
    let guest = platform.guest.id
    #expect(throws: VMMError(.EBUSY, "a trusted device has GPA 0x20000 mapped private")) {
      try platform.vmm.convert(guest, gpa: 0x20000, pages: 1, toShared: true)
    }
    #expect(platform.memory.page(at: platform.guest.pages[0x20])?.state == .private)
    // A page nothing maps converts; once the guest unmaps the IOVA, so does the other.
    try platform.vmm.convert(guest, gpa: 0x40000, pages: 1, toShared: true)
    _ = try table.unmap(IOVA(0x2000_0000), size: 4096)
    try platform.vmm.convert(guest, gpa: 0x20000, pages: 1, toShared: true)
    #expect(platform.memory.page(at: platform.guest.pages[0x20])?.state == .shared)
  }

  @Test func anUntrustedDevicesMappingDoesNotBlockConversion() throws {
    let (platform, _) = try setUp()
    try platform.tsm.stop(Platform.function, for: platform.guest.id)
    try platform.vmm.convert(platform.guest.id, gpa: 0x20000, pages: 1, toShared: true)
  }
}

extension VIOMMUPlatformTests {
  @Test func aCachedPrivateTranslationAlsoBlocksConversion() throws {
    let (platform, table) = try setUp()
    let guest = platform.guest.id
    try platform.copy(
      ring: 0x3000_0000, ringGPA: 0x1000,
      CoveDMAEngine.Descriptor(source: 0x1000_0000, destination: 0x2000_0000, length: 16))
    // The guest drops the entry but does not invalidate: the cached translation could still be used.
    _ = try table.unmap(IOVA(0x2000_0000), size: 4096)
    #expect(throws: VMMError(.EBUSY, "a trusted device has GPA 0x20000 mapped private")) {
      try platform.vmm.convert(guest, gpa: 0x20000, pages: 1, toShared: true)
    }
    try platform.vmm.viommuCommand(guest, .invalidateDomain(Self.domain))
    try platform.vmm.convert(guest, gpa: 0x20000, pages: 1, toShared: true)
  }

  @Test func aTablePageReachedAgainAtAnotherLevelIsStillRead() throws {
    let platform = try Platform(viommu: true)
    try platform.accept()
    let guest = platform.guest.id
    let tables = GuestTables(vmm: platform.vmm, guest: guest, pool: 0x80000)
    let root = tables.allocateTablePage()!
    let p = tables.allocateTablePage()!
    let q = tables.allocateTablePage()!
    let rw: UInt64 = 3
    tables.storeEntry(p.rawValue | rw, at: PhysicalAddress(root.rawValue + 8))  // root[1] → P (level 3)
    tables.storeEntry(q.rawValue | rw, at: p)  // P[0] → Q (level 2)
    tables.storeEntry(p.rawValue | rw, at: q)  // Q[0] → P, used as level 1
    tables.storeEntry(0x20000 | rw, at: PhysicalAddress(p.rawValue + 8))  // P[1]: a 4 KiB leaf at level 1
    try platform.vmm.viommuCommand(
      guest,
      .attach(requester: Platform.function, pasid: nil, domain: Self.domain, root: root, inputAddressBits: 48)
    )
    #expect(throws: VMMError(.EBUSY, "a trusted device has GPA 0x20000 mapped private")) {
      try platform.vmm.convert(guest, gpa: 0x20000, pages: 1, toShared: true)
    }
  }

  @Test func aLockedTDIsPrivateMappingBlocksConversionToo() throws {
    let platform = try Platform(viommu: true)
    try platform.tsm.connect()
    try platform.tsm.bind(Platform.function, to: platform.guest.id)
    try platform.tsm.lock(Platform.function, for: platform.guest.id)
    let tables = GuestTables(vmm: platform.vmm, guest: platform.guest.id, pool: 0x80000)
    let table = try RadixIOPageTable(memory: tables)
    try table.map(IOVA(0x2000_0000), to: PhysicalAddress(0x20000), size: 4096, protection: [.read, .write])
    try platform.vmm.viommuCommand(
      platform.guest.id,
      .attach(
        requester: Platform.function, pasid: nil, domain: Self.domain, root: table.root, inputAddressBits: 48)
    )
    #expect(throws: VMMError.self) {
      try platform.vmm.convert(platform.guest.id, gpa: 0x20000, pages: 1, toShared: true)
    }
  }

  @Test func aT0CopyStopsAtTheFirstPrivatePageAndKeepsWhatCameBefore() throws {
    let (platform, table) = try setUp()
    let guest = platform.guest.id
    // Three IOVA pages marked shared over GPAs 0x50000…0x52000; only the first two are shared.
    for page in 0..<3 {
      try table.map(
        IOVA(0x5000_0000 + UInt64(page) * 4096), to: PhysicalAddress(0x50000 + UInt64(page) * 4096),
        size: 4096,
        protection: [.read, .write, .shared])
      try table.map(
        IOVA(0x6000_0000 + UInt64(page) * 4096), to: PhysicalAddress(0x60000 + UInt64(page) * 4096),
        size: 4096,
        protection: [.read, .write, .shared])
    }
    try platform.vmm.convert(guest, gpa: 0x50000, pages: 2, toShared: true)
    try platform.vmm.convert(guest, gpa: 0x60000, pages: 3, toShared: true)
    let data = (0..<8192).map { UInt8($0 % 251) }
    try platform.vmm.guestWrite(guest, gpa: 0x50000, bytes: data)
    try platform.copy(
      ring: 0x3000_0000, ringGPA: 0x1000,
      CoveDMAEngine.Descriptor(
        source: 0x5000_0000, destination: 0x6000_0000, length: 12288, flags: [.sourceT0, .destinationT0]))
    #expect(platform.iommu.faults.map(\.reason) == [.tZeroToPrivate])
    #expect(platform.iommu.faults.first?.tlp.address == 0x5000_2000)
    #expect(platform.engine.bytesMoved == 8192)
    #expect(try platform.vmm.guestRead(guest, gpa: 0x60000, count: 8192) == data)
  }

  @Test func aRefusedT0WriteSpanningAPrivatePageWritesNothing() throws {
    let (platform, table) = try setUp()
    let guest = platform.guest.id
    for page in 0..<2 {
      try table.map(
        IOVA(0x7000_0000 + UInt64(page) * 4096), to: PhysicalAddress(0x70000 + UInt64(page) * 4096),
        size: 4096,
        protection: [.read, .write, .shared])
    }
    try platform.vmm.convert(guest, gpa: 0x70000, pages: 1, toShared: true)
    let bytes = [UInt8](repeating: 0x5C, count: 8192)
    let verdict = bytes.withUnsafeBytes { buffer in
      platform.iommu.dmaWrite(
        TLP(
          requesterID: Platform.function, address: 0x7000_0000, tBit: false, kind: .memoryWrite(length: 8192)),
        from: buffer)
    }
    #expect(verdict == .refused(.tZeroToPrivate))
    #expect(platform.iommu.faults.last?.tlp.address == 0x7000_1000)
    #expect(try platform.vmm.guestRead(guest, gpa: 0x70000, count: 16) == [UInt8](repeating: 0, count: 16))
  }
}
