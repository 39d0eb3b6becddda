import GuestABI
import HostPlatform
import IOMMU
import PCIe
import Testing

/// The nested walk: exact translations and exact faults through guest tables written by the IOMMU
/// core's `RadixIOPageTable` into guest memory, then a differential test against an independent
/// reference walk over thousands of random IOVAs.
@Suite struct VIOMMUNestedWalkTests {
  let rid = RequesterID(rawValue: 0x0308)

  /// A rig whose 48-bit table maps a 4 KiB read-write page, a 2 MiB shared read-only page, a 1 GiB
  /// read-write page and a 4 KiB write-only page.
  func makeMappedRig() throws -> (VIOMMURig, RadixIOPageTable) {
    let rig = VIOMMURig()
    let table = try rig.makeTable()
    try table.map(
      IOVA(0x80_8060_5000), to: PhysicalAddress(0x40_0000_3000), size: 0x1000, protection: .readWrite)
    try table.map(
      IOVA(0x4000_0000), to: PhysicalAddress(0x40_0020_0000), size: 0x20_0000, protection: [.read, .shared])
    try table.map(
      IOVA(0x80_0000_0000), to: PhysicalAddress(0x40_4000_0000), size: 0x4000_0000, protection: .readWrite)
    try table.map(IOVA(0x80_8060_7000), to: PhysicalAddress(0x40_0000_9000), size: 0x1000, protection: .write)
    return (rig, table)
  }

  func translate(
    _ rig: VIOMMURig, _ table: RadixIOPageTable, _ iova: UInt64, _ access: IOAccess = .read
  ) throws -> Result<NestedTranslation, VIOMMUFault> {
    let guestTable = try GuestIOTable(
      domain: DomainID(rawValue: 1), root: table.root, inputAddressBits: table.inputAddressBits)
    return NestedWalk.translate(
      IOVA(iova), access: access, table: guestTable, guest: rig.guest, stage2: rig.memory, memory: rig.memory)
  }

  /// The guest-physical pages of the tables on the walk of `iova`, top level first.
  func tablePages(_ rig: VIOMMURig, _ table: RadixIOPageTable, _ iova: UInt64) throws -> [UInt64] {
    try RadixIOPageTable.walk(root: table.root, memory: rig.tableMemory, iova: IOVA(iova)).steps.map {
      $0.entryAddress.rawValue & ~0xFFF
    }
  }

  @Test func translatesEveryLeafSize() throws {
    let (rig, table) = try makeMappedRig()
    #expect(table.root == PhysicalAddress(0x1_0000_0000))
    #expect(
      try translate(rig, table, 0x80_8060_5123, .write)
        == .success(
          NestedTranslation(
            guestPhysical: PhysicalAddress(0x40_0000_3123), hostPhysical: PhysicalAddress(0x9_0000_0000_3123),
            protection: .readWrite, stage1PageSize: .size4K)))
    #expect(
      try translate(rig, table, 0x4012_3456)
        == .success(
          NestedTranslation(
            guestPhysical: PhysicalAddress(0x40_0032_3456), hostPhysical: PhysicalAddress(0x9_0000_0032_3456),
            protection: [.read, .shared], stage1PageSize: .size2M)))
    #expect(
      try translate(rig, table, 0x80_1234_5678, .write)
        == .success(
          NestedTranslation(
            guestPhysical: PhysicalAddress(0x40_5234_5678), hostPhysical: PhysicalAddress(0x9_0000_5234_5678),
            protection: .readWrite, stage1PageSize: .size1G)))
    #expect(
      try translate(rig, table, 0x80_8060_7008, .write).map(\.protection) == .success(.write))
  }

  @Test func stage1FaultsNameTheirLevel() throws {
    let (rig, table) = try makeMappedRig()
    #expect(try translate(rig, table, 0x100_0000_0000) == .failure(.stage1NotPresent(level: 4)))
    #expect(try translate(rig, table, 0) == .failure(.stage1NotPresent(level: 3)))
    #expect(try translate(rig, table, 0x80_4000_0000) == .failure(.stage1NotPresent(level: 3)))
    #expect(try translate(rig, table, 0x80_8000_0000) == .failure(.stage1NotPresent(level: 2)))
    #expect(try translate(rig, table, 0x80_8060_6000) == .failure(.stage1NotPresent(level: 1)))
    #expect(try translate(rig, table, 1 << 48) == .failure(.addressOutOfRange))
    #expect(try translate(rig, table, .max) == .failure(.addressOutOfRange))

    // The guest writes a reserved bit into its own level-1 entry (bit 52, above the address field).
    let pages = try tablePages(rig, table, 0x80_8060_5000)
    #expect(pages == [0x1_0000_0000, 0x1_0000_1000, 0x1_0000_2000, 0x1_0000_3000])
    let leafEntry = PhysicalAddress(pages[3] + 5 * 8)
    let leaf = rig.memory.guestLoad(leafEntry)
    #expect(leaf == 0x40_0000_3003)
    rig.memory.guestStore(leaf | 1 << 52, at: leafEntry)
    #expect(try translate(rig, table, 0x80_8060_5000) == .failure(.stage1ReservedBits(level: 1)))
    // S in a non-leaf entry is reserved.
    let rootEntry = PhysicalAddress(pages[0] + 1 * 8)
    rig.memory.guestStore(rig.memory.guestLoad(rootEntry) | 1 << 11, at: rootEntry)
    #expect(try translate(rig, table, 0x80_8060_5000) == .failure(.stage1ReservedBits(level: 4)))
  }

  @Test func permissionIsCheckedAgainstTheGuestsRights() throws {
    let (rig, table) = try makeMappedRig()
    #expect(try translate(rig, table, 0x4000_0000, .write) == .failure(.permission))
    #expect(try translate(rig, table, 0x80_8060_7000, .read) == .failure(.permission))
    // A read-only non-leaf entry restricts the read-write leaves below it (R and W ANDed).
    let pages = try tablePages(rig, table, 0x80_8060_5000)
    let level3Entry = PhysicalAddress(pages[1] + 2 * 8)
    rig.memory.guestStore(rig.memory.guestLoad(level3Entry) & ~0x2, at: level3Entry)
    #expect(try translate(rig, table, 0x80_8060_5000, .write) == .failure(.permission))
    #expect(try translate(rig, table, 0x80_8060_5000).map(\.protection) == .success(.read))
  }

  @Test func unreadableTablePagesFaultWithTheEntrysGuestAddress() throws {
    let (rig, table) = try makeMappedRig()
    let pages = try tablePages(rig, table, 0x80_8060_5000)
    // The level-2 table loses its stage-2 mapping.
    rig.memory.unmapStage2(PhysicalAddress(pages[2]))
    #expect(
      try translate(rig, table, 0x80_8060_5000)
        == .failure(.stage1TableNotMapped(level: 2, entry: PhysicalAddress(0x1_0000_2018))))
    // The level-3 table is mapped but the platform refuses to read it.
    rig.memory.refusedHostPages.insert(try #require(rig.memory.hostPage(of: PhysicalAddress(pages[1]))))
    #expect(
      try translate(rig, table, 0x80_8060_5000)
        == .failure(.stage1TableReadRefused(level: 3, entry: PhysicalAddress(0x1_0000_1010))))
    // The root itself.
    rig.memory.unmapStage2(table.root)
    #expect(
      try translate(rig, table, 0x80_8060_5000)
        == .failure(.stage1TableNotMapped(level: 4, entry: PhysicalAddress(0x1_0000_0008))))
  }

  @Test func outputWithoutStage2MappingFaultsWithTheOutputAddress() throws {
    let (rig, table) = try makeMappedRig()
    rig.memory.dataHoles.insert(0x40_0000_3000 >> 21)
    #expect(
      try translate(rig, table, 0x80_8060_5123)
        == .failure(.stage2OutputNotMapped(output: PhysicalAddress(0x40_0000_3123))))
    // Permission is the guest's fault and is reported first.
    #expect(try translate(rig, table, 0x80_8060_7000, .read) == .failure(.permission))
  }

  @Test func anotherGuestCannotReadTheTables() throws {
    let (rig, table) = try makeMappedRig()
    let intruder = VIOMMU(guest: GuestID(2), stage2: rig.memory, memory: rig.memory)
    try intruder.execute(
      .attach(
        requester: rid, pasid: nil, domain: DomainID(rawValue: 1), root: table.root, inputAddressBits: 48))
    #expect(
      intruder.translate(requester: rid, pasid: nil, iova: IOVA(0x80_8060_5000), access: .read)
        == .failure(.stage1TableReadRefused(level: 4, entry: PhysicalAddress(0x1_0000_0008))))
  }

  @Test func thirtyNineBitTablesStartAtLevelThree() throws {
    let rig = VIOMMURig()
    let table = try rig.makeTable(bits: 39)
    try table.map(
      IOVA(0x40_0000_0000), to: PhysicalAddress(0x40_8000_0000), size: 0x4000_0000, protection: .read)
    #expect(
      try translate(rig, table, 0x40_0000_0010).map(\.guestPhysical)
        == .success(PhysicalAddress(0x40_8000_0010)))
    #expect(try translate(rig, table, 1 << 39) == .failure(.addressOutOfRange))
    #expect(try translate(rig, table, 0) == .failure(.stage1NotPresent(level: 3)))
    rig.memory.unmapStage2(table.root)
    #expect(
      try translate(rig, table, 0x40_0000_0010)
        == .failure(.stage1TableNotMapped(level: 3, entry: PhysicalAddress(0x1_0000_0800))))
  }

  @Test func guestTableValidation() {
    func errno(_ root: UInt64, _ bits: Int) -> Errno? {
      viommuErrno {
        _ = try GuestIOTable(
          domain: DomainID(rawValue: 1), root: PhysicalAddress(root), inputAddressBits: bits)
      }
    }
    #expect(errno(0x1000, 48) == nil)
    #expect(errno(0x1000, 39) == nil)
    #expect(errno(0x1000, 57) == .EINVAL)
    #expect(errno(0x1008, 48) == .EINVAL)
    #expect(errno(1 << 52, 48) == .EINVAL)
  }

  // MARK: - Differential

  /// Random 4 KiB / 2 MiB / 1 GiB mappings written by `RadixIOPageTable` into guest memory; then table
  /// pages lose their stage-2 mapping or become unreadable, entries get reserved bits, output pages
  /// get holes. Thousands of IOVAs, each read and write, must give exactly the reference walk's result —
  /// through `NestedWalk` and through the vIOMMU with its cache — and every translation must agree with
  /// the list of mappings.
  @Test(arguments: [(UInt64(1), 48), (2, 48), (3, 39), (4, 39)])
  func matchesTheReferenceWalk(seed: UInt64, bits: Int) throws {
    var random = VIOMMUTestRandom(seed: seed)
    let rig = VIOMMURig()
    let table = try rig.makeTable(bits: bits)
    let limit: UInt64 = 1 << UInt64(bits)
    var model = MappingModel()

    // Mappings, clustered in eight 1 GiB regions so tables are shared and leaf sizes mix.
    let regions = (0..<8).map { _ in random.below(limit >> 30) << 30 }
    let dataPages = FakeGuestMemory.dataSize >> 12
    for _ in 0..<300 {
      let region = regions[Int(random.below(UInt64(regions.count)))]
      let roll = random.below(100)
      let size: PageSize = roll < 60 ? .size4K : (roll < 92 ? .size2M : .size1G)
      let iova: UInt64
      switch size {
      case .size4K: iova = region + random.below(8 * 512) << 12
      case .size2M: iova = region + random.below(512) << 21
      case .size1G: iova = (region + random.below(4) << 30) % limit
      }
      let gpa = FakeGuestMemory.dataBase + (random.below(dataPages) << 12) / size.bytes * size.bytes
      var protection: IOProtection = [[.read], [.write], .readWrite][Int(random.below(3))]
      if random.chance(30) { protection.insert(.shared) }
      let errno = viommuErrno {
        try table.map(IOVA(iova), to: PhysicalAddress(gpa), size: size.bytes, protection: protection)
      }
      if let errno {
        #expect(errno == .EEXIST)
      } else {
        model.leaves.append(.init(iova: iova, gpa: gpa, size: size, protection: protection))
      }
    }
    #expect(model.leaves.count > 150)

    // Faults, each aimed at the walk of a random leaf; the IOVAs aimed at are probed first.
    func randomLeaf() -> MappingModel.Leaf { model.leaves[Int(random.below(UInt64(model.leaves.count)))] }
    func steps(_ iova: UInt64) throws -> [IOPageWalk.Step] {
      try RadixIOPageTable.walk(
        root: table.root, memory: rig.tableMemory, iova: IOVA(iova), inputAddressBits: bits
      )
      .steps
    }
    /// A 4 KiB leaf and its level-1 table's guest page (a small subtree, so other faults stay visible).
    func smallLeafAndItsTable() throws -> (iova: UInt64, tablePage: PhysicalAddress)? {
      for _ in 0..<100 {
        let leaf = randomLeaf()
        guard leaf.size == .size4K else { continue }
        let walk = try steps(leaf.iova)
        if walk.count > 1, let last = walk.last {
          return (leaf.iova, PhysicalAddress(last.entryAddress.rawValue & ~0xFFF))
        }
      }
      return nil
    }
    var targets: [UInt64] = []
    for _ in 0..<2 {
      guard let (iova, page) = try smallLeafAndItsTable() else { continue }
      rig.memory.unmapStage2(page)
      targets.append(iova)
    }
    for _ in 0..<2 {
      guard let (iova, page) = try smallLeafAndItsTable(), let host = rig.memory.hostPage(of: page) else {
        continue
      }
      rig.memory.refusedHostPages.insert(host)
      targets.append(iova)
    }
    for corruption in 0..<6 {
      let leaf = randomLeaf()
      let walk = try steps(leaf.iova)
      // Mostly the leaf entry; once an entry above it, which takes a whole subtree.
      guard let step = corruption == 0 ? walk.dropLast().randomElement(using: &random) : walk.last else {
        continue
      }
      let reservedBit: UInt64 = [1 << 52, 1 << 2, 1 << 9, 1 << 63][Int(random.below(4))]
      rig.memory.guestStore(step.entry.rawValue | reservedBit, at: step.entryAddress)
      targets.append(leaf.iova)
    }
    for _ in 0..<4 {
      // A guest may restrict a whole subtree at a non-leaf entry (R and W are ANDed over the levels).
      let leaf = randomLeaf()
      guard let step = try steps(leaf.iova).dropLast().randomElement(using: &random) else { continue }
      let cleared: UInt64 = random.chance(50) ? 0x1 : 0x2
      rig.memory.guestStore(step.entry.rawValue & ~cleared, at: step.entryAddress)
      targets.append(leaf.iova)
    }
    for _ in 0..<6 {
      let leaf = randomLeaf()
      let iova = leaf.iova + random.below(leaf.size.bytes)
      rig.memory.dataHoles.insert((leaf.gpa + (iova - leaf.iova)) >> 21)
      targets.append(iova)
    }

    try rig.viommu.execute(
      .attach(
        requester: rid, pasid: nil, domain: DomainID(rawValue: 7), root: table.root, inputAddressBits: bits))
    let guestTable = try GuestIOTable(domain: DomainID(rawValue: 7), root: table.root, inputAddressBits: bits)
    var outcomes: Set<String> = []
    for probe in 0..<3000 {
      let iova: UInt64
      let roll = random.below(100)
      if probe < 2 * targets.count {
        iova = targets[probe / 2]
      } else if roll < 60 {
        let leaf = randomLeaf()
        iova = leaf.iova + random.below(leaf.size.bytes)
      } else if roll < 75 {
        let leaf = randomLeaf()
        iova =
          [leaf.iova, leaf.iova &- 1, leaf.iova + leaf.size.bytes - 1, leaf.iova + leaf.size.bytes][
            Int(random.below(4))]
      } else if roll < 95 {
        iova = random.below(limit)
      } else {
        iova = limit + random.below(UInt64.max - limit)
      }
      let access: IOAccess =
        probe < 2 * targets.count ? (probe % 2 == 0 ? .read : .write) : (random.chance(50) ? .read : .write)
      let expected = ReferenceNestedWalk.translate(
        iova, access: access, root: table.root.rawValue, bits: bits, guest: rig.guest, memory: rig.memory)
      let walked = NestedWalk.translate(
        IOVA(iova), access: access, table: guestTable, guest: rig.guest, stage2: rig.memory,
        memory: rig.memory)
      #expect(walked == expected, "probe \(probe): \(access) 0x\(String(iova, radix: 16))")
      let viaVIOMMU = rig.viommu.translate(requester: rid, pasid: nil, iova: IOVA(iova), access: access)
      #expect(
        viaVIOMMU == expected, "probe \(probe) through the vIOMMU: \(access) 0x\(String(iova, radix: 16))")
      switch expected {
      case .success(let translation):
        outcomes.insert("translated")
        let leaf = try #require(
          model.leaf(containing: iova), "translated 0x\(String(iova, radix: 16)) unmapped")
        #expect(translation.guestPhysical.rawValue == leaf.gpa + (iova - leaf.iova))
        // The leaf's rights, less whatever an entry above it withholds; S from the leaf alone.
        #expect(translation.protection.isSubset(of: leaf.protection))
        #expect(translation.protection.contains(.shared) == leaf.protection.contains(.shared))
        #expect(translation.stage1PageSize == leaf.size)
      case .failure(let fault):
        outcomes.insert(fault.reasonCode.description)
        if case .stage1NotPresent = fault {
          #expect(model.leaf(containing: iova) == nil, "0x\(String(iova, radix: 16)) is mapped")
        }
      }
    }
    #expect(
      outcomes == [
        "translated", "address out of range", "stage 1 not present", "stage 1 reserved bits",
        "stage 1 table not mapped", "stage 1 table read refused", "stage 2 output not mapped", "permission",
      ])
    #expect(rig.viommu.iotlb.hits > 0)
  }
}
