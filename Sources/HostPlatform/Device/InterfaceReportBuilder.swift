public import PCIe
public import TDISP

/// What a device does differently from the report its configuration implies, so users can test a TSM
/// and a guest against odd reports (extra or hidden ranges, non-TEE ranges, attribute quirks,
/// device-specific data).
public struct InterfaceReportTweaks: Hashable, Sendable {
  /// Ranges (by RANGE_ID) reported with IS_NON_TEE_MEM: served to T=0 accesses in RUN.
  public var nonTEERangeIDs: Set<UInt16>
  /// Ranges (by RANGE_ID) reported with IS_MEM_ATTR_UPDATABLE (SET_MMIO_ATTRIBUTE may flip them).
  public var updatableRangeIDs: Set<UInt16>
  /// Ranges (by RANGE_ID) left out of the report.
  public var hiddenRangeIDs: Set<UInt16>
  /// Ranges appended after the ones the BARs produce.
  public var extraRanges: [TDISPMMIORange]
  /// INTERFACE_INFO bits set beyond the ones the configuration implies, and bits cleared.
  public var addedInterfaceInfo: TDISPInterfaceInfo
  public var removedInterfaceInfo: TDISPInterfaceInfo
  public var deviceSpecificInfo: [UInt8]
  /// A whole report served instead of the built one.
  public var replacement: TDISPDeviceInterfaceReport?

  public init(
    nonTEERangeIDs: Set<UInt16> = [], updatableRangeIDs: Set<UInt16> = [], hiddenRangeIDs: Set<UInt16> = [],
    extraRanges: [TDISPMMIORange] = [], addedInterfaceInfo: TDISPInterfaceInfo = [],
    removedInterfaceInfo: TDISPInterfaceInfo = [], deviceSpecificInfo: [UInt8] = [],
    replacement: TDISPDeviceInterfaceReport? = nil
  ) {
    self.nonTEERangeIDs = nonTEERangeIDs
    self.updatableRangeIDs = updatableRangeIDs
    self.hiddenRangeIDs = hiddenRangeIDs
    self.extraRanges = extraRanges
    self.addedInterfaceInfo = addedInterfaceInfo
    self.removedInterfaceInfo = removedInterfaceInfo
    self.deviceSpecificInfo = deviceSpecificInfo
    self.replacement = replacement
  }

  public static let none = InterfaceReportTweaks()
}

/// Builds a TDI's device interface report from its function's configuration as it stands at LOCK
/// (PCIe 6.x §11.3.11, Table 11-15 and the MMIO_RANGE rules under it):
/// - each implemented memory BAR gives its pages, RANGE_ID = the BAR index;
/// - pages holding the MSI-X table or PBA are split out with the MSI-X Table / PBA attribute, since a
///   TSM must map them differently (the spec requires them reported as their own ranges);
/// - MSI_X_MESSAGE_CONTROL is the capability's current Message Control;
/// - INTERFACE_INFO says DMA without PASID always, DMA with PASID when the PASID capability exists,
///   ATS / PRS when those capabilities exist, and "no firmware update" when LOCK asked for it.
/// Addresses are as the function decodes them; the TDI adds MMIO_REPORTING_OFFSET.
public enum InterfaceReportBuilder {
  public static let pageSize: UInt64 = 4096

  public static func report(
    for config: PCIeConfigSpace, lockFlags: TDISPLockFlags, tweaks: InterfaceReportTweaks = .none
  ) -> TDISPDeviceInterfaceReport {
    if let replacement = tweaks.replacement { return replacement }
    var info: TDISPInterfaceInfo = [.dmaWithoutPASID]
    if config.layout.offset(of: PCIExtendedCapabilityID.pasid) != nil { info.insert(.dmaWithPASID) }
    if config.layout.offset(of: PCIExtendedCapabilityID.ats) != nil { info.insert(.atsSupported) }
    if config.layout.offset(of: PCIExtendedCapabilityID.pri) != nil { info.insert(.prsSupported) }
    if lockFlags.contains(.noFirmwareUpdate) { info.insert(.noFirmwareUpdateWhileLocked) }
    info.formUnion(tweaks.addedInterfaceInfo)
    info.subtract(tweaks.removedInterfaceInfo)

    var msixControl: UInt16 = 0
    var msix: MSIXCapability?
    if let placed = config.layout.standardCapabilities.first(where: { $0.capability.id == .msix }),
      case .msix(let capability) = placed.capability
    {
      msix = capability
      msixControl = UInt16(
        truncatingIfNeeded: config.read(
          offset: placed.offset + MSIXCapabilityRegister.messageControl, size: 2))
    }

    var ranges: [TDISPMMIORange] = []
    for (index, bar) in config.layout.bars.enumerated() {
      guard let bar, bar.kind != .io, let base = config.barAddress(index) else { continue }
      let rangeID = UInt16(index)
      guard !tweaks.hiddenRangeIDs.contains(rangeID) else { continue }
      var special: [(range: Range<UInt64>, attribute: TDISPMMIORangeAttributes)] = []
      if let msix {
        if msix.tableBIR == index {
          special.append((UInt64(msix.tableOffset)..<UInt64(msix.tableOffset) + msix.tableBytes, .msixTable))
        }
        if msix.pbaBIR == index {
          special.append((UInt64(msix.pbaOffset)..<UInt64(msix.pbaOffset) + msix.pbaBytes, .msixPBA))
        }
      }
      var common: TDISPMMIORangeAttributes = []
      if tweaks.nonTEERangeIDs.contains(rangeID) { common.insert(.isNonTEEMemory) }
      if tweaks.updatableRangeIDs.contains(rangeID) { common.insert(.isMemoryAttributeUpdatable) }
      let pages = (bar.size + pageSize - 1) / pageSize
      // One attribute set per page, then runs of equal pages become ranges.
      var page: UInt64 = 0
      while page < pages {
        let attributes = attributesOf(page: page, special: special).union(common)
        var end = page + 1
        while end < pages, attributesOf(page: end, special: special).union(common) == attributes { end += 1 }
        ranges.append(
          TDISPMMIORange(
            firstPage: base &+ page &* pageSize, numberOfPages: UInt32(clamping: end - page),
            attributes: attributes,
            rangeID: rangeID))
        page = end
      }
    }
    ranges += tweaks.extraRanges
    return TDISPDeviceInterfaceReport(
      interfaceInfo: info, msixMessageControl: msixControl, mmioRanges: ranges,
      deviceSpecificInfo: tweaks.deviceSpecificInfo)
  }

  private static func attributesOf(
    page: UInt64, special: [(range: Range<UInt64>, attribute: TDISPMMIORangeAttributes)]
  ) -> TDISPMMIORangeAttributes {
    let bytes = page * pageSize..<(page + 1) * pageSize
    var attributes: TDISPMMIORangeAttributes = []
    for entry in special where entry.range.overlaps(bytes) { attributes.insert(entry.attribute) }
    return attributes
  }

  /// Why LOCK must refuse `config` with INVALID_DEVICE_CONFIGURATION (PCIe 6.x §11.3.8, "no
  /// overlapping BARs"), or nil: two memory BARs overlap, or a BAR runs past the top of the 64-bit
  /// address space (a value only an untrusted host's BAR write can produce).
  public static func lockRefusal(_ config: PCIeConfigSpace) -> String? {
    var spans: [(index: Int, range: ClosedRange<UInt64>)] = []
    for (index, bar) in config.layout.bars.enumerated() {
      guard let bar, bar.kind != .io, bar.size > 0, let base = config.barAddress(index) else { continue }
      let (last, overflow) = base.addingReportingOverflow(bar.size - 1)
      if overflow { return "BAR\(index) at 0x\(String(base, radix: 16)) runs past the 64-bit address space" }
      spans.append((index, base...last))
    }
    for (i, a) in spans.enumerated() {
      for b in spans[(i + 1)...] where a.range.overlaps(b.range) {
        return "BAR\(a.index) and BAR\(b.index) overlap"
      }
    }
    return nil
  }
}
