import PCIe
import Testing

@Suite("Configuration space layout: BAR sizing, capability lists, DOE window, builder errors")
struct ConfigSpaceLayoutTests {
  /// (BAR register offset, value read after writing all ones).
  @Test(arguments: [
    (0x10, UInt32(0xFFF0_000C)),  // 64-bit prefetchable 1 MiB, lower half
    (0x14, UInt32(0xFFFF_FFFF)),  // upper half: all address bits writable below 4 GiB
    (0x18, UInt32(0xFFFF_0000)),  // 32-bit 64 KiB
    (0x1C, UInt32(0)),  // unimplemented
    (0x20, UInt32(0xFFFF_FFE1)),  // I/O 32 bytes
    (0x24, UInt32(0)),  // unimplemented
  ])
  func barSizing(offset: Int, sizeMask: UInt32) throws {
    var space = try ConfigSpaceFixture.configSpace()
    #expect(
      space.write(offset: offset, size: 4, value: 0xFFFF_FFFF) == [.barWritten(index: (offset - 0x10) / 4)])
    #expect(space.read(offset: offset, size: 4) == sizeMask)
    _ = space.write(offset: offset, size: 4, value: 0)
    #expect(space.read(offset: offset, size: 4) == (ConfigSpaceFixture.resetDWords[offset] ?? 0))
  }

  @Test func largeAndSmallBARs() throws {
    var builder = PCIeConfigSpaceBuilder(vendorID: 0x1234, deviceID: 0x0001, classCode: 0)
    builder.bars[0] = .memory64(size: 8 << 30, prefetchable: true)
    builder.bars[2] = .memory32(size: 16, prefetchable: true)
    builder.bars[3] = .memory64(size: 4 << 10)
    var space = try builder.build()
    #expect(space.read(offset: 0x10, size: 4) == 0x0000_000C)
    #expect(space.read(offset: 0x18, size: 4) == 0x0000_0008)
    #expect(space.read(offset: 0x1C, size: 4) == 0x0000_0004)
    for offset in stride(from: 0x10, to: 0x28, by: 4) {
      _ = space.write(offset: offset, size: 4, value: 0xFFFF_FFFF)
    }
    #expect(space.read(offset: 0x10, size: 4) == 0x0000_000C)  // 8 GiB: no lower address bits
    #expect(space.read(offset: 0x14, size: 4) == 0xFFFF_FFFE)
    #expect(space.read(offset: 0x18, size: 4) == 0xFFFF_FFF8)
    #expect(space.read(offset: 0x1C, size: 4) == 0xFFFF_F004)
    #expect(space.read(offset: 0x20, size: 4) == 0xFFFF_FFFF)
    #expect(space.read(offset: 0x24, size: 4) == 0)
    #expect(
      space.layout.bars == [
        .memory64(size: 8 << 30, prefetchable: true), nil, .memory32(size: 16, prefetchable: true),
        .memory64(size: 4 << 10), nil, nil,
      ])
    #expect(space.barAddress(0) == 0xFFFF_FFFE_0000_0000)
    #expect(space.barAddress(1) == nil)
    #expect(space.barAddress(3) == 0xFFFF_FFFF_FFFF_F000)
    #expect(space.barAddress(5) == nil)
    #expect(space.barAddress(6) == nil)
    #expect(space.barAddress(-1) == nil)
    // No capabilities: the status register says so and the pointer is 0.
    #expect(space.read(offset: 0x06, size: 2) == 0)
    #expect(space.read(offset: 0x34, size: 1) == 0)
    #expect(space.read(offset: 0x100, size: 4) == 0)
  }

  @Test func barProgrammingBySubDWordWrites() throws {
    var space = try ConfigSpaceFixture.configSpace()
    #expect(space.write(offset: 0x1A, size: 2, value: 0xFEDC) == [.barWritten(index: 2)])
    #expect(space.write(offset: 0x18, size: 2, value: 0xFFFF) == [.barWritten(index: 2)])
    #expect(space.read(offset: 0x18, size: 4) == 0xFEDC_0000)
    #expect(space.barAddress(2) == 0xFEDC_0000)
    #expect(space.barAddress(4) == 0)
    _ = space.write(offset: 0x20, size: 4, value: 0x0000_C041)
    #expect(space.barAddress(4) == 0xC040)
  }

  /// Walks the standard list from the capabilities pointer: (ID, offset) in order.
  static func standardList(_ space: PCIeConfigSpace) -> [(UInt8, Int)] {
    var result: [(UInt8, Int)] = []
    var offset = Int(space.read(offset: 0x34, size: 1)) & ~3
    while offset != 0, result.count < 48 {
      result.append((UInt8(space.read(offset: offset, size: 1)), offset))
      offset = Int(space.read(offset: offset + 1, size: 1)) & ~3
    }
    return result
  }

  /// Walks the extended list from 0x100: (ID, version, offset) in order.
  static func extendedList(_ space: PCIeConfigSpace) -> [(UInt16, UInt32, Int)] {
    var result: [(UInt16, UInt32, Int)] = []
    var offset = 0x100
    while offset != 0, result.count < 960 {
      let header = space.read(offset: offset, size: 4)
      if header == 0 { break }
      result.append((UInt16(header & 0xFFFF), (header >> 16) & 0xF, offset))
      offset = Int(header >> 20) & ~3
    }
    return result
  }

  @Test func standardCapabilityWalk() throws {
    let space = try ConfigSpaceFixture.configSpace()
    let list = Self.standardList(space)
    #expect(list.map(\.0) == [0x10, 0x11])
    #expect(list.map(\.1) == [0x40, 0x80])
    #expect(space.layout.offset(of: .pciExpress) == 0x40)
    #expect(space.layout.offset(of: .msix) == 0x80)
    #expect(space.layout.offset(of: PCICapabilityID(rawValue: 0x05)) == nil)
  }

  @Test func extendedCapabilityWalk() throws {
    let space = try ConfigSpaceFixture.configSpace()
    let list = Self.extendedList(space)
    #expect(list.map(\.0) == [0x000D, 0x000F, 0x0013, 0x001B, 0x002E, 0x0030])
    #expect(list.map(\.1) == [1, 1, 1, 1, 1, 1])
    #expect(list.map(\.2) == [0x100, 0x108, 0x110, 0x120, 0x128, 0x140])
    let ids: [PCIExtendedCapabilityID] = [.acs, .ats, .pri, .pasid, .doe, .ide]
    #expect(ids.map { space.layout.offset(of: $0) } == [0x100, 0x108, 0x110, 0x120, 0x128, 0x140])
    #expect(space.layout.doeOffset == 0x128)
  }

  @Test func capabilitiesLinkInTheOrderAdded() throws {
    var builder = PCIeConfigSpaceBuilder(vendorID: 0x1234, deviceID: 0x0002, classCode: 0)
    builder.bars[0] = .memory32(size: 4096)
    builder.add(
      .msix(MSIXCapability(tableSize: 1, tableBIR: 0, tableOffset: 0, pbaBIR: 0, pbaOffset: 0x800)), at: 0xB0)
    builder.add(.pciExpress(PCIExpressCapability()), at: 0x60)
    builder.add(.ide(IDECapability(selectiveStreamAddressBlocks: [])), at: 0x100)
    builder.add(.doe(DOECapability(version: 2)), at: 0x800)
    let space = try builder.build()
    #expect(Self.standardList(space).map(\.1) == [0xB0, 0x60])
    #expect(space.read(offset: 0x34, size: 1) == 0xB0)
    #expect(Self.extendedList(space).map(\.2) == [0x100, 0x800])
    #expect(space.read(offset: 0x100, size: 4) == 0x8001_0030)
    #expect(space.read(offset: 0x104, size: 4) == 0x0000_0040)  // IDE_KM only, no selective streams
    #expect(space.read(offset: 0x800, size: 4) == 0x0002_002E)
  }

  @Test func doeWindowIsForwardedToTheOwner() throws {
    var space = try ConfigSpaceFixture.configSpace()
    var mailbox = DOEMailbox(nextCapabilityOffset: 0x140)
    let doe = try #require(space.layout.doeOffset)
    // A request DW written through config space goes to the mailbox.
    let events = space.write(offset: doe + DOERegister.writeMailbox, size: 4, value: 0x0000_0001)
    #expect(events == [.doe(offset: DOERegister.writeMailbox, value: 1)])
    for case .doe(let offset, let value) in events { _ = mailbox.writeRegister(offset: offset, value: value) }
    #expect(mailbox.pendingRequestDWords == 1)
    // Header, control and status writes are forwarded too; byte and word writes are not.
    #expect(space.write(offset: doe, size: 4, value: 0) == [.doe(offset: 0, value: 0)])
    #expect(
      space.write(offset: doe + 0x08, size: 2, value: 1) == [
        .ignoredAccess(offset: doe + 0x08, size: 2, reason: .doeRequiresDWordAccess)
      ])
    #expect(
      space.write(offset: doe + 0x17, size: 1, value: 1) == [
        .ignoredAccess(offset: doe + 0x17, size: 1, reason: .doeRequiresDWordAccess)
      ])
    // Just outside the window: the neighbours' registers (PASID Capability/Control, IDE header).
    #expect(
      space.write(offset: doe - 4, size: 4, value: 0xFFFF_FFFF) == [.pasidControlChanged(old: 0, new: 1)])
    #expect(space.write(offset: doe + 0x18, size: 4, value: 0xFFFF_FFFF) == [.ideRegisterWritten(offset: 0)])

    // Reads: the header from config space, the rest from the mailbox.
    #expect(space.read(offset: doe, size: 4, doeMailbox: mailbox) == 0x1401_002E)
    #expect(space.read(offset: doe, size: 4) == mailbox.readRegister(offset: DOERegister.header))
    _ = mailbox.writeRegister(offset: DOERegister.control, value: DOEControl.go.rawValue)
    let status = mailbox.readRegister(offset: DOERegister.status)
    #expect(space.read(offset: doe + DOERegister.status, size: 4, doeMailbox: mailbox) == status)
    #expect(space.read(offset: doe + DOERegister.status, size: 1, doeMailbox: mailbox) == status & 0xFF)
    #expect(space.read(offset: doe + DOERegister.status + 2, size: 2, doeMailbox: mailbox) == status >> 16)
    #expect(space.read(offset: doe + DOERegister.status, size: 4) == 0)  // without the mailbox
    // Outside the window, or invalid, the mailbox variant is the plain read.
    #expect(space.read(offset: 0, size: 4, doeMailbox: mailbox) == 0x11E8_1234)
    #expect(space.read(offset: doe + 1, size: 4, doeMailbox: mailbox) == 0)
  }

  @Test func ideStreamOffsets() {
    let ide = ConfigSpaceFixture.ide
    #expect(ide.selectiveStreamOffset(0) == 0x0C)
    #expect(ide.selectiveStreamOffset(1) == 0x2C)
    #expect(ide.selectiveStreamOffset(2) == nil)
    #expect(ide.selectiveStreamOffset(-1) == nil)
    #expect(ExtendedCapability.ide(ide).size == 0x58)
    let hostile = IDECapability(selectiveStreamAddressBlocks: [Int.max, Int.max, 0])
    #expect(hostile.selectiveStreamOffset(2) != nil)  // garbage, but no trap
  }

  static func error(_ change: (inout PCIeConfigSpaceBuilder) -> Void) -> ConfigSpaceLayoutError? {
    var builder = PCIeConfigSpaceBuilder(vendorID: 0x1234, deviceID: 0x0003, classCode: 0)
    builder.bars[0] = .memory32(size: 4096)
    change(&builder)
    do {
      _ = try builder.build()
      return nil
    } catch {
      return error
    }
  }

  static func check(
    _ expected: ConfigSpaceLayoutError?, sourceLocation: SourceLocation = #_sourceLocation,
    _ change: (inout PCIeConfigSpaceBuilder) -> Void
  ) {
    let actual = error(change)
    #expect(actual == expected, sourceLocation: sourceLocation)
  }

  @Test func builderErrors() {
    Self.check(.barSlotCount(7)) { $0.bars.append(nil) }
    Self.check(.barSlotConflict(index: 5)) { $0.bars[5] = .memory64(size: 4096) }
    Self.check(.barSlotConflict(index: 0)) {
      $0.bars[0] = .memory64(size: 4096)
      $0.bars[1] = .io(size: 4)
    }
    Self.check(.invalidBAR(index: 1)) { $0.bars[1] = .memory32(size: 4095) }
    Self.check(.invalidBAR(index: 1)) { $0.bars[1] = .memory32(size: 8) }
    Self.check(.invalidBAR(index: 1)) { $0.bars[1] = .memory32(size: 1 << 32) }
    Self.check(.invalidBAR(index: 1)) { $0.bars[1] = .io(size: 512) }
    Self.check(.invalidBAR(index: 1)) { $0.bars[1] = .memory32(size: 0) }
    Self.check(.capabilityOutOfRange(offset: 0x3C)) { $0.add(.pciExpress(PCIExpressCapability()), at: 0x3C) }
    Self.check(.capabilityOutOfRange(offset: 0xD0)) { $0.add(.pciExpress(PCIExpressCapability()), at: 0xD0) }
    Self.check(.misalignedCapability(offset: 0x42)) { $0.add(.pciExpress(PCIExpressCapability()), at: 0x42) }
    Self.check(.overlappingCapabilities(offset: 0x78)) {
      $0.add(.pciExpress(PCIExpressCapability()), at: 0x40)
      $0.add(
        .msix(MSIXCapability(tableSize: 1, tableBIR: 0, tableOffset: 0, pbaBIR: 0, pbaOffset: 0x10)), at: 0x78
      )
    }
    Self.check(.duplicateCapability(offset: 0x80)) {
      $0.add(.pciExpress(PCIExpressCapability()), at: 0x40)
      $0.add(.pciExpress(PCIExpressCapability()), at: 0x80)
    }
    Self.check(.extendedListMustStartAt0x100(offset: 0x200)) { $0.add(.ats(ATSCapability()), at: 0x200) }
    Self.check(.capabilityOutOfRange(offset: 0xFC)) { $0.add(.ats(ATSCapability()), at: 0xFC) }
    Self.check(.capabilityOutOfRange(offset: 0xFFC)) { $0.add(.ats(ATSCapability()), at: 0xFFC) }
    Self.check(.invalidCapability(offset: 0x100)) { $0.add(.pasid(PASIDCapability(maxWidth: 21)), at: 0x100) }
    Self.check(.invalidCapability(offset: 0x100)) {
      $0.add(.ide(IDECapability(selectiveStreamAddressBlocks: [16])), at: 0x100)
    }
    Self.check(.invalidCapability(offset: 0x40)) {
      $0.add(.pciExpress(PCIExpressCapability(maxPayloadSizeSupported: 6)), at: 0x40)
    }
    // MSI-X: table size, alignment, and table/PBA inside an implemented memory BAR.
    let badMSIX: [MSIXCapability] = [
      MSIXCapability(tableSize: 0, tableBIR: 0, tableOffset: 0, pbaBIR: 0, pbaOffset: 0x800),
      MSIXCapability(tableSize: 2049, tableBIR: 0, tableOffset: 0, pbaBIR: 0, pbaOffset: 0x800),
      MSIXCapability(tableSize: 1, tableBIR: 0, tableOffset: 4, pbaBIR: 0, pbaOffset: 0x800),
    ]
    for msix in badMSIX {
      Self.check(.invalidCapability(offset: 0x40)) { $0.add(.msix(msix), at: 0x40) }
    }
    let outside: [MSIXCapability] = [
      MSIXCapability(tableSize: 1, tableBIR: 1, tableOffset: 0, pbaBIR: 0, pbaOffset: 0x800),
      MSIXCapability(tableSize: 1, tableBIR: 7, tableOffset: 0, pbaBIR: 0, pbaOffset: 0x800),
      MSIXCapability(tableSize: 257, tableBIR: 0, tableOffset: 0, pbaBIR: 0, pbaOffset: 0x800),
      MSIXCapability(tableSize: 1, tableBIR: 0, tableOffset: 0, pbaBIR: 0, pbaOffset: 0x1000),
    ]
    for msix in outside {
      Self.check(.msixStructureOutsideBAR(offset: 0x40)) { $0.add(.msix(msix), at: 0x40) }
    }
    Self.check(.msixTableOverlapsPBA(offset: 0x40)) {
      $0.add(
        .msix(MSIXCapability(tableSize: 4, tableBIR: 0, tableOffset: 0, pbaBIR: 0, pbaOffset: 0x38)), at: 0x40
      )
    }
    Self.check(nil) {  // table 0x00..<0x40, PBA right after it
      $0.add(
        .msix(MSIXCapability(tableSize: 4, tableBIR: 0, tableOffset: 0, pbaBIR: 0, pbaOffset: 0x40)), at: 0x40
      )
    }
    // Hostile values are errors, not traps.
    Self.check(.capabilityOutOfRange(offset: Int.max)) { $0.add(.ats(ATSCapability()), at: Int.max) }
    Self.check(.capabilityOutOfRange(offset: Int.min)) {
      $0.add(.pciExpress(PCIExpressCapability()), at: Int.min)
    }
    Self.check(.invalidCapability(offset: 0x100)) {
      $0.add(.ide(IDECapability(selectiveStreamAddressBlocks: [Int.max, Int.max])), at: 0x100)
    }
    Self.check(.invalidCapability(offset: 0x100)) {
      $0.add(.ide(IDECapability(selectiveStreamAddressBlocks: Array(repeating: 0, count: 257))), at: 0x100)
    }
    Self.check(nil) { _ in }
  }
}
