public import PCIe

/// What the guest requires of a device before it accepts one of its TDIs: the roots its certificate
/// chain must lead to and the measurement values it may report. The guest's own policy, so it need
/// trust nothing the host says about the device (SEMANTICS.md §6: lock → verify evidence → accept).
public struct AttestationPolicy: Hashable, Sendable {
  /// DER root certificates; the device's chain must validate to one of them (RFC 5280 §6, DSP0274
  /// "certificate chain format").
  public var trustAnchors: [[UInt8]]
  /// Measurement index → the DMTF measurement values allowed there (DSP0274 "DMTF measurement
  /// specification format"). Every index listed must be reported with one of its values; an index
  /// with an empty set admits nothing. Indices not listed are not checked: a policy names what it
  /// cares about, and devices report more than any one guest needs.
  public var measurements: [UInt8: Set<[UInt8]>]
  /// Unix seconds at which the certificates must be valid; nil means now. Tests fix it so a test PKI
  /// does not expire under them.
  public var validationTime: Int64?

  public init(
    trustAnchors: [[UInt8]], measurements: [UInt8: Set<[UInt8]>] = [:], validationTime: Int64? = nil
  ) {
    self.trustAnchors = trustAnchors
    self.measurements = measurements
    self.validationTime = validationTime
  }
}

/// Where the function's MSI-X table and Pending Bit Array live, as the guest read them from the MSI-X
/// capability (PCIe 6.x §7.7.2). The interface report must show exactly those pages with the MSI-X
/// Table / PBA attributes (§11.3.11), since the TSM maps them differently from the rest of the BAR.
public struct MSIXLocation: Hashable, Sendable {
  /// A byte range inside one BAR.
  public struct Region: Hashable, Sendable {
    /// The BAR index (BIR).
    public var bar: Int
    /// Offset of the first byte from the start of the BAR.
    public var offset: UInt64
    /// Length in bytes.
    public var size: UInt64

    public init(bar: Int, offset: UInt64, size: UInt64) {
      self.bar = bar
      self.offset = offset
      self.size = size
    }
  }

  public var table: Region
  public var pba: Region

  public init(table: Region, pba: Region) {
    self.table = table
    self.pba = pba
  }

  /// From the capability's registers as a config-space read returns them (PCIe 6.x §7.7.2.2–§7.7.2.4):
  /// Message Control bits 10:0 are the table size N−1; Table Offset/Table BIR and PBA Offset/PBA BIR
  /// hold the BIR in bits 2:0 and a QWORD-aligned offset in bits 31:3. The table is 16 bytes per
  /// entry, the PBA one bit per entry rounded up to QWORDs (§7.7.2).
  public init(messageControl: UInt16, tableOffsetBIR: UInt32, pbaOffsetBIR: UInt32) {
    let entries = UInt64(messageControl & MSIXCapabilityRegister.tableSizeMask) + 1
    table = Region(bar: Int(tableOffsetBIR & 0x7), offset: UInt64(tableOffsetBIR & ~0x7), size: entries * 16)
    pba = Region(
      bar: Int(pbaOffsetBIR & 0x7), offset: UInt64(pbaOffsetBIR & ~0x7), size: (entries + 63) / 64 * 8)
  }

  /// From a decoded capability (the same geometry as the register form).
  public init(_ capability: MSIXCapability) {
    table = Region(
      bar: capability.tableBIR, offset: UInt64(capability.tableOffset), size: capability.tableBytes)
    pba = Region(bar: capability.pbaBIR, offset: UInt64(capability.pbaOffset), size: capability.pbaBytes)
  }
}

/// The function as the guest sees it, from its own PCI enumeration: what the device's interface
/// report must describe (PCIe 6.x §11.3.11). A host that moved a BAR, hid part of one, or put the
/// MSI-X table somewhere else than the capability says is caught by comparing the two.
public struct ExpectedInterface: Hashable, Sendable {
  /// BAR index → the guest-physical range the BAR decodes (its address and sized length). Only
  /// memory BARs; the upper half of a 64-bit BAR has no entry.
  public var bars: [Int: Range<UInt64>]
  /// The MSI-X table and PBA, or nil when the function has no MSI-X capability; then the report's
  /// MSI-X attributes are not checked.
  public var msix: MSIXLocation?

  public init(bars: [Int: Range<UInt64>], msix: MSIXLocation? = nil) {
    self.bars = bars
    self.msix = msix
  }
}
