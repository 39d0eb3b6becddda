import PCIe
import Testing

@Suite("Configuration space: reset values, access shapes, RO/RW/RW1C (PCIe 6.x §7.5)")
struct PCIeConfigSpaceTests {
  @Test func everyDWordAfterReset() throws {
    let space = try ConfigSpaceFixture.configSpace()
    for offset in stride(from: 0, to: PCIeConfigSpace.size, by: 4) {
      let expected = ConfigSpaceFixture.resetDWords[offset] ?? 0
      #expect(space.read(offset: offset, size: 4) == expected, "dword at \(offset)")
    }
  }

  @Test func byteAndWordReads() throws {
    let space = try ConfigSpaceFixture.configSpace()
    #expect(space.read(offset: 0x00, size: 2) == 0x1234)
    #expect(space.read(offset: 0x02, size: 2) == 0x11E8)
    #expect(space.read(offset: 0x01, size: 1) == 0x12)
    #expect(space.read(offset: 0x0B, size: 1) == 0x12)  // base class
    #expect(space.read(offset: 0x06, size: 2) == 0x0010)
    #expect(space.read(offset: 0x0E, size: 1) == 0x00)
    #expect(space.read(offset: 0x34, size: 1) == 0x40)
  }

  @Test func multiFunctionHeaderType() throws {
    var builder = ConfigSpaceFixture.builder()
    builder.multiFunction = true
    let space = try builder.build()
    #expect(space.read(offset: PCIHeaderRegister.headerType, size: 1) == 0x80)
  }

  @Test(arguments: [
    (0x05, 2), (0x02, 4), (0x01, 2), (0x03, 4), (0x41, 2), (0x102, 4),
  ])
  func misalignedAccessesAreIgnored(offset: Int, size: Int) throws {
    var space = try ConfigSpaceFixture.configSpace()
    let events = space.write(offset: offset, size: size, value: 0xFFFF_FFFF)
    #expect(events == [.ignoredAccess(offset: offset, size: size, reason: .misaligned)])
    #expect(space.read(offset: offset, size: size) == 0)
    for dword in stride(from: 0, to: 0x200, by: 4) {
      #expect(space.read(offset: dword, size: 4) == (ConfigSpaceFixture.resetDWords[dword] ?? 0))
    }
  }

  @Test(arguments: [0, 3, 5, 8, -1])
  func invalidSizesAreIgnored(size: Int) throws {
    var space = try ConfigSpaceFixture.configSpace()
    #expect(
      space.write(offset: 0x04, size: size, value: 0x6) == [
        .ignoredAccess(offset: 0x04, size: size, reason: .invalidSize)
      ])
    #expect(space.read(offset: 0x04, size: size) == 0)
    #expect(space.command == [])
  }

  @Test(arguments: [(0x1000, 1), (0x1000, 4), (-4, 4), (-1, 1), (0xFFE, 4), (Int.max, 4), (Int.min, 2)])
  func outOfRangeAccessesAreIgnored(offset: Int, size: Int) throws {
    var space = try ConfigSpaceFixture.configSpace()
    #expect(
      space.write(offset: offset, size: size, value: 0xFFFF_FFFF) == [
        .ignoredAccess(offset: offset, size: size, reason: .outOfRange)
      ])
    #expect(space.read(offset: offset, size: size) == 0)
  }

  @Test func lastDWordIsUnimplementedButAccessible() throws {
    var space = try ConfigSpaceFixture.configSpace()
    #expect(space.write(offset: 0xFFC, size: 4, value: 0xFFFF_FFFF) == [])
    #expect(space.read(offset: 0xFFC, size: 4) == 0)
    #expect(space.read(offset: 0xFFF, size: 1) == 0)
  }

  @Test func readOnlyRegistersIgnoreWrites() throws {
    var space = try ConfigSpaceFixture.configSpace()
    let readOnly = [
      0x00, 0x08, 0x0C, 0x2C, 0x34, 0x40, 0x44, 0x4C, 0x84, 0x88, 0x100, 0x108, 0x110, 0x118, 0x120,
    ]
    for offset in readOnly {
      _ = space.write(offset: offset, size: 4, value: 0xFFFF_FFFF)
      _ = space.write(offset: offset, size: 4, value: 0)
    }
    for offset in readOnly where offset != 0x0C {
      #expect(
        space.read(offset: offset, size: 4) == (ConfigSpaceFixture.resetDWords[offset] ?? 0), "\(offset)")
    }
    // 0x0C: cache line size is RW, latency timer, header type and BIST are RO.
    #expect(space.write(offset: 0x0C, size: 4, value: 0xFFFF_FFFF) == [])
    #expect(space.read(offset: 0x0C, size: 4) == 0x0000_00FF)
    // Message Control's table size is RO.
    _ = space.write(offset: 0x82, size: 2, value: 0x07FF)
    #expect(space.read(offset: 0x82, size: 2) == 0x000F)
  }

  @Test func commandRegisterWritableBits() throws {
    var space = try ConfigSpaceFixture.configSpace()
    #expect(space.write(offset: 0x04, size: 2, value: 0xFFFF) == [])
    // I/O, MSE, BME, parity error response, SERR#, INTx disable.
    #expect(space.read(offset: 0x04, size: 2) == 0x0547)
    #expect(
      space.command == [.ioSpace, .memorySpace, .busMaster, .parityErrorResponse, .serr, .interruptDisable])

    var builder = ConfigSpaceFixture.builder()
    builder.bars[4] = nil
    var noIO = try builder.build()
    _ = noIO.write(offset: 0x04, size: 2, value: 0xFFFF)
    #expect(noIO.read(offset: 0x04, size: 2) == 0x0546)  // I/O Space Enable hardwired to 0
  }

  @Test func statusIsWriteOneToClear() throws {
    var space = try ConfigSpaceFixture.configSpace()
    let accepted = space.hardwareWrite(offset: 0x06, size: 2, value: 0xF910)
    #expect(accepted)
    #expect(space.read(offset: 0x06, size: 2) == 0xF910)
    // Writing 0 changes nothing; writing 1 clears only the RW1C bits written.
    _ = space.write(offset: 0x06, size: 2, value: 0x0000)
    #expect(space.read(offset: 0x06, size: 2) == 0xF910)
    _ = space.write(offset: 0x06, size: 2, value: 0x0810)
    #expect(space.read(offset: 0x06, size: 2) == 0xF110)
    _ = space.write(offset: 0x06, size: 2, value: 0xFFFF)
    #expect(space.read(offset: 0x06, size: 2) == 0x0010)  // capabilities list is RO
    // A dword write to the command register leaves the status RW1C bits alone when their half is 0.
    space.hardwareWrite(offset: 0x06, size: 2, value: 0x2010)
    _ = space.write(offset: 0x04, size: 4, value: 0x0000_0006)
    #expect(space.read(offset: 0x04, size: 4) == 0x2010_0006)
    #expect(space.status == [.capabilitiesList, .receivedMasterAbort])
  }

  @Test func deviceStatusIsWriteOneToClear() throws {
    var space = try ConfigSpaceFixture.configSpace()
    space.hardwareWrite(offset: 0x4A, size: 2, value: 0x002F)
    _ = space.write(offset: 0x4A, size: 2, value: 0x0005)
    #expect(space.read(offset: 0x4A, size: 2) == 0x002A)  // bit 5 (Transactions Pending) is RO
  }

  @Test func deviceControlWritableBits() throws {
    var space = try ConfigSpaceFixture.configSpace()
    #expect(space.write(offset: 0x48, size: 2, value: 0x7FFF) == [])
    #expect(space.read(offset: 0x48, size: 2) == 0x79FF)
    #expect(space.write(offset: 0x48, size: 2, value: 0x0000) == [])
    #expect(space.read(offset: 0x48, size: 2) == 0x0000)
  }

  @Test func hardwareWriteRejectsInvalidAccesses() throws {
    var space = try ConfigSpaceFixture.configSpace()
    let outOfRange = space.hardwareWrite(offset: 0x1000, size: 4, value: 1)
    let misaligned = space.hardwareWrite(offset: 0x02, size: 4, value: 1)
    #expect(!outOfRange)
    #expect(!misaligned)
    #expect(space.read(offset: 0, size: 4) == 0x11E8_1234)
  }
}
