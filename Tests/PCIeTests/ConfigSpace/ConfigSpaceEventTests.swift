import PCIe
import Testing

@Suite("Configuration space events: the TDISP ERROR triggers (PCIe 6.x §11.2.6)")
struct ConfigSpaceEventTests {
  @Test func memorySpaceAndBusMasterEventsOnlyOnOneToZero() throws {
    var space = try ConfigSpaceFixture.configSpace()
    #expect(space.write(offset: 0x04, size: 2, value: 0x0006) == [])  // 0 → 1: nothing
    #expect(space.write(offset: 0x04, size: 2, value: 0x0006) == [])  // unchanged
    #expect(space.write(offset: 0x04, size: 2, value: 0x0002) == [.busMasterDisabled])
    #expect(space.write(offset: 0x04, size: 2, value: 0x0002) == [])  // BME already 0
    #expect(space.write(offset: 0x04, size: 1, value: 0x00) == [.memorySpaceDisabled])
    #expect(space.write(offset: 0x04, size: 1, value: 0x00) == [])
    _ = space.write(offset: 0x04, size: 4, value: 0x0006)
    #expect(space.write(offset: 0x04, size: 4, value: 0) == [.memorySpaceDisabled, .busMasterDisabled])
    // A write to the upper byte of the command register does not touch MSE/BME.
    _ = space.write(offset: 0x04, size: 2, value: 0x0006)
    #expect(space.write(offset: 0x05, size: 1, value: 0x04) == [])
    #expect(space.read(offset: 0x04, size: 2) == 0x0406)
  }

  @Test func barWritesReportTheSlotOnEveryWrite() throws {
    var space = try ConfigSpaceFixture.configSpace()
    for index in 0..<6 {
      #expect(space.write(offset: 0x10 + 4 * index, size: 4, value: 0) == [.barWritten(index: index)])
    }
    #expect(space.write(offset: 0x12, size: 2, value: 0xFFFF) == [.barWritten(index: 0)])
    #expect(space.write(offset: 0x17, size: 1, value: 0x01) == [.barWritten(index: 1)])
    #expect(space.write(offset: 0x0C, size: 4, value: 0) == [])
    #expect(space.write(offset: 0x28, size: 4, value: 0) == [])
  }

  @Test func msixControlChanges() throws {
    var space = try ConfigSpaceFixture.configSpace()
    #expect(
      space.write(offset: 0x82, size: 2, value: 0x8000) == [.msixControlChanged(old: 0x000F, new: 0x800F)])
    #expect(space.write(offset: 0x82, size: 2, value: 0x8000) == [])
    #expect(
      space.write(offset: 0x83, size: 1, value: 0xC0) == [.msixControlChanged(old: 0x800F, new: 0xC00F)])
    #expect(
      space.write(offset: 0x82, size: 2, value: 0x07FF) == [.msixControlChanged(old: 0xC00F, new: 0x000F)])
    // Table size is RO: writing it changes nothing and reports nothing.
    #expect(space.write(offset: 0x82, size: 2, value: 0x0003) == [])
    // The table/PBA registers are RO and not in config space's events.
    #expect(space.write(offset: 0x84, size: 4, value: 0xFFFF_FFFF) == [])
  }

  @Test func atsControlChanges() throws {
    var space = try ConfigSpaceFixture.configSpace()
    #expect(space.write(offset: 0x10E, size: 2, value: 0xFFFF) == [.atsControlChanged(old: 0, new: 0x801F)])
    #expect(space.read(offset: 0x10C, size: 4) == 0x801F_0020)
    #expect(space.write(offset: 0x10E, size: 2, value: 0xFFFF) == [])
    #expect(
      space.write(offset: 0x10C, size: 4, value: 0x001F_0000) == [
        .atsControlChanged(old: 0x801F, new: 0x001F)
      ])
  }

  @Test func priControlChangesAndStopped() throws {
    var space = try ConfigSpaceFixture.configSpace()
    #expect(space.write(offset: 0x114, size: 2, value: 0x0001) == [.priControlChanged(old: 0, new: 1)])
    #expect(space.read(offset: 0x114, size: 4) == 0x8000_0001)  // Stopped cleared while enabled
    #expect(space.write(offset: 0x114, size: 2, value: 0x0003) == [])  // Reset reads 0, Enable unchanged
    #expect(space.read(offset: 0x114, size: 2) == 0x0001)
    #expect(space.write(offset: 0x114, size: 2, value: 0) == [.priControlChanged(old: 1, new: 0)])
    #expect(space.read(offset: 0x114, size: 4) == 0x8100_0000)
    // Allocation is RW and reports nothing.
    #expect(space.write(offset: 0x11C, size: 4, value: 0x10) == [])
    #expect(space.read(offset: 0x11C, size: 4) == 0x10)
    // Status RW1C.
    space.hardwareWrite(offset: 0x116, size: 2, value: 0x8103)
    _ = space.write(offset: 0x116, size: 2, value: 0xFFFF)
    #expect(space.read(offset: 0x116, size: 2) == 0x8100)
  }

  @Test func pasidControlChanges() throws {
    var space = try ConfigSpaceFixture.configSpace()
    // Execute and privileged modes unsupported: only Enable is writable.
    #expect(space.write(offset: 0x126, size: 2, value: 0x0007) == [.pasidControlChanged(old: 0, new: 1)])
    #expect(space.write(offset: 0x126, size: 2, value: 0x0001) == [])
    #expect(space.write(offset: 0x124, size: 4, value: 0) == [.pasidControlChanged(old: 1, new: 0)])
    #expect(space.read(offset: 0x124, size: 4) == 0x0000_1400)
  }

  @Test func acsControlChanges() throws {
    var space = try ConfigSpaceFixture.configSpace()
    #expect(space.write(offset: 0x106, size: 2, value: 0x0002) == [])  // unsupported bit
    #expect(space.write(offset: 0x106, size: 2, value: 0xFFFF) == [.acsControlChanged(old: 0, new: 0x001D)])
    #expect(space.read(offset: 0x104, size: 4) == 0x001D_001D)
  }

  @Test func ideWritesReportTheirOffset() throws {
    var space = try ConfigSpaceFixture.configSpace()
    // Stream 0 control: enable, stream ID 5, default stream; reserved bits dropped.
    #expect(space.write(offset: 0x150, size: 4, value: 0x05C0_0003) == [.ideRegisterWritten(offset: 0x10)])
    #expect(space.read(offset: 0x150, size: 4) == 0x0540_0001)
    // Even a write that changes nothing (RO capability register) is reported.
    #expect(space.write(offset: 0x144, size: 4, value: 0) == [.ideRegisterWritten(offset: 0x04)])
    #expect(space.read(offset: 0x144, size: 4) == 0x0001_0042)
    #expect(space.write(offset: 0x140, size: 1, value: 0) == [.ideRegisterWritten(offset: 0)])
    // Stream 1 RID association 2 (valid, RID base, segment base) and its last address register.
    #expect(space.write(offset: 0x17C, size: 4, value: 0xFFFF_FFFF) == [.ideRegisterWritten(offset: 0x3C)])
    #expect(space.read(offset: 0x17C, size: 4) == 0xFFFF_FF01)
    #expect(space.write(offset: 0x194, size: 4, value: 0x1234_5678) == [.ideRegisterWritten(offset: 0x54)])
    #expect(space.read(offset: 0x194, size: 4) == 0x1234_5678)
    // Past the IDE capability: nothing.
    #expect(space.write(offset: 0x198, size: 4, value: 0xFFFF_FFFF) == [])
    // Stream status: state is hardware's, integrity-check-fail is RW1C.
    space.hardwareWrite(offset: 0x154, size: 4, value: 0x8000_0002)
    #expect(space.write(offset: 0x154, size: 4, value: 0xFFFF_FFFF) == [.ideRegisterWritten(offset: 0x14)])
    #expect(space.read(offset: 0x154, size: 4) == 0x0000_0002)
  }

  @Test func functionLevelResetRestoresRWStateAndKeepsRO() throws {
    var space = try ConfigSpaceFixture.configSpace()
    _ = space.write(offset: 0x04, size: 2, value: 0x0406)
    _ = space.write(offset: 0x10, size: 4, value: 0xFE00_0000)
    _ = space.write(offset: 0x14, size: 4, value: 0x1)
    _ = space.write(offset: 0x18, size: 4, value: 0xFD00_0000)
    _ = space.write(offset: 0x0C, size: 1, value: 0x10)
    _ = space.write(offset: 0x3C, size: 1, value: 0x0B)
    _ = space.write(offset: 0x82, size: 2, value: 0x8000)
    _ = space.write(offset: 0x10E, size: 2, value: 0x8000)
    _ = space.write(offset: 0x150, size: 4, value: 0x0100_0001)
    #expect(space.barAddress(0) == 0x1_FE00_0000)
    #expect(space.barAddress(2) == 0xFD00_0000)

    // Initiate FLR together with a Device Control change: FLR wins, and reads 0.
    #expect(space.write(offset: 0x48, size: 2, value: 0x8000) == [.functionLevelReset])
    for offset in stride(from: 0, to: PCIeConfigSpace.size, by: 4) {
      #expect(
        space.read(offset: offset, size: 4) == (ConfigSpaceFixture.resetDWords[offset] ?? 0), "\(offset)")
    }
    #expect(space.command == [])
    #expect(space.barAddress(0) == 0)
  }

  @Test func functionLevelResetByByteAndDWordWrites() throws {
    var space = try ConfigSpaceFixture.configSpace()
    _ = space.write(offset: 0x04, size: 2, value: 0x0006)
    #expect(space.write(offset: 0x49, size: 1, value: 0x80) == [.functionLevelReset])
    #expect(space.command == [])
    _ = space.write(offset: 0x04, size: 2, value: 0x0006)
    #expect(space.write(offset: 0x48, size: 4, value: 0x0000_8000) == [.functionLevelReset])
    #expect(space.command == [])
    // Writing the other byte, or bit 15 as 0, is no FLR.
    #expect(space.write(offset: 0x48, size: 1, value: 0x80) == [])
    #expect(space.read(offset: 0x48, size: 2) == 0x2880)
    #expect(space.write(offset: 0x49, size: 1, value: 0x00) == [])
  }

  @Test func functionLevelResetIgnoredWithoutCapability() throws {
    var pcie = PCIExpressCapability()
    pcie.functionLevelResetCapable = false
    var builder = PCIeConfigSpaceBuilder(
      vendorID: 0x1234, deviceID: 0x11E8, revisionID: 2, classCode: 0x12_0000)
    builder.add(.pciExpress(pcie), at: 0x40)
    var space = try builder.build()
    #expect(space.read(offset: 0x44, size: 4) == 0x0000_8001)
    _ = space.write(offset: 0x04, size: 2, value: 0x0006)
    #expect(space.write(offset: 0x48, size: 2, value: 0x8000) == [])
    #expect(space.command == [.memorySpace, .busMaster])
    #expect(space.read(offset: 0x48, size: 2) == 0x0000)
  }

  @Test func resetRestoresEverything() throws {
    var space = try ConfigSpaceFixture.configSpace()
    _ = space.write(offset: 0x04, size: 2, value: 0x0006)
    _ = space.write(offset: 0x126, size: 2, value: 1)
    space.reset()
    #expect(space.read(offset: 0x04, size: 2) == 0)
    #expect(space.read(offset: 0x126, size: 2) == 0)
  }
}
