import PCIe

/// A TEE-IO accelerator function with every modelled capability:
///
///     0x040 PCI Express  → 0x080 MSI-X → end
///     0x100 ACS → 0x108 ATS → 0x110 PRI → 0x120 PASID → 0x128 DOE → 0x140 IDE (2 streams) → end
///
/// BAR0/1: 64-bit prefetchable 1 MiB; BAR2: 32-bit 64 KiB (MSI-X table at 0, PBA at 0x800);
/// BAR3: none; BAR4: I/O 32 bytes; BAR5: none.
enum ConfigSpaceFixture {
  static let ide = IDECapability(selectiveStreamAddressBlocks: [1, 2])

  static func builder() -> PCIeConfigSpaceBuilder {
    var builder = PCIeConfigSpaceBuilder(
      vendorID: 0x1234, deviceID: 0x11E8, revisionID: 0x02, classCode: 0x12_0000)
    builder.subsystemVendorID = 0x1234
    builder.subsystemID = 0x0001
    builder.bars[0] = .memory64(size: 1 << 20, prefetchable: true)
    builder.bars[2] = .memory32(size: 64 << 10)
    builder.bars[4] = .io(size: 32)
    builder.add(.pciExpress(PCIExpressCapability()), at: 0x40)
    builder.add(
      .msix(MSIXCapability(tableSize: 16, tableBIR: 2, tableOffset: 0, pbaBIR: 2, pbaOffset: 0x800)), at: 0x80
    )
    builder.add(.acs(ACSCapability(capabilities: 0x001D)), at: 0x100)
    builder.add(.ats(ATSCapability()), at: 0x108)
    builder.add(.pri(PRICapability()), at: 0x110)
    builder.add(.pasid(PASIDCapability()), at: 0x120)
    builder.add(.doe(DOECapability()), at: 0x128)
    builder.add(.ide(ide), at: 0x140)
    return builder
  }

  static func configSpace() throws -> PCIeConfigSpace {
    try builder().build()
  }

  /// Every non-zero dword after reset; every other dword of the 4 KiB reads 0.
  static let resetDWords: [Int: UInt32] = [
    0x000: 0x11E8_1234,  // device 11E8, vendor 1234
    0x004: 0x0010_0000,  // status: capabilities list; command 0
    0x008: 0x1200_0002,  // class 12 00 00, revision 02
    0x010: 0x0000_000C,  // BAR0: 64-bit, prefetchable
    0x020: 0x0000_0001,  // BAR4: I/O
    0x02C: 0x0001_1234,  // subsystem 0001, subsystem vendor 1234
    0x034: 0x0000_0040,  // capabilities pointer
    0x040: 0x0002_8010,  // PCIe cap v2 endpoint, next 0x80, ID 0x10
    0x044: 0x1000_8001,  // DevCap: FLR, role-based error reporting, MPS 256
    0x048: 0x0000_2810,  // DevCtl: MRRS 512, no snoop, relaxed ordering
    0x04C: 0x0000_0011,  // LinkCap: 2.5 GT/s x1
    0x050: 0x0011_0000,  // LinkSta: 2.5 GT/s x1
    0x080: 0x000F_0011,  // MSI-X: 16 entries, next 0, ID 0x11
    0x084: 0x0000_0002,  // table: BIR 2, offset 0
    0x088: 0x0000_0802,  // PBA: BIR 2, offset 0x800
    0x100: 0x1081_000D,  // ACS v1, next 0x108
    0x104: 0x0000_001D,  // ACS capability V R C U
    0x108: 0x1101_000F,  // ATS v1, next 0x110
    0x10C: 0x0000_0020,  // ATS: page aligned request
    0x110: 0x1201_0013,  // PRI v1, next 0x120
    0x114: 0x8100_0000,  // PRI status: PASID required, stopped
    0x118: 0x0000_0020,  // PRI capacity 32
    0x120: 0x1281_001B,  // PASID v1, next 0x128
    0x124: 0x0000_1400,  // PASID width 20
    0x128: 0x1401_002E,  // DOE v1, next 0x140
    0x140: 0x0001_0030,  // IDE v1, end
    0x144: 0x0001_0042,  // IDE: 2 selective streams, IDE_KM, selective
    0x14C: 0x0000_0001,  // stream 0: 1 address block
    0x16C: 0x0000_0002,  // stream 1: 2 address blocks
  ]
}
