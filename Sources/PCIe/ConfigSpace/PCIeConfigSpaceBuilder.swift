/// Why a builder could not lay out a configuration space.
public enum ConfigSpaceLayoutError: Error, Hashable, Sendable {
  /// `bars` must have exactly six slots.
  case barSlotCount(Int)
  /// The BAR's size or kind is not one hardware can have (see ``BARDefinition/size``).
  case invalidBAR(index: Int)
  /// A 64-bit BAR in slot 5, or a BAR in the slot after a 64-bit one.
  case barSlotConflict(index: Int)
  /// A standard capability outside 0x40..<0x100 or an extended one outside 0x100..<0x1000.
  case capabilityOutOfRange(offset: Int)
  /// Capabilities start on a DW boundary (PCIe 6.x §7.5.1.1.11, §7.6.3).
  case misalignedCapability(offset: Int)
  case overlappingCapabilities(offset: Int)
  /// Cove models at most one capability of each ID.
  case duplicateCapability(offset: Int)
  /// The extended list starts at 0x100 (PCIe 6.x §7.6).
  case extendedListMustStartAt0x100(offset: Int)
  /// A field of the capability is out of range (MSI-X table size, PASID width, IDE stream count…).
  case invalidCapability(offset: Int)
  /// The MSI-X table or PBA is not inside an implemented memory BAR.
  case msixStructureOutsideBAR(offset: Int)
  /// The MSI-X table and PBA overlap (PCIe 6.x §7.7.2: they may share a BAR, not addresses).
  case msixTableOverlapsPBA(offset: Int)
}

/// Lays out a function's configuration space: identity, BARs and capabilities at chosen offsets.
/// Capabilities are linked in the order they were added.
public struct PCIeConfigSpaceBuilder: Sendable {
  public var vendorID: UInt16
  public var deviceID: UInt16
  public var revisionID: UInt8
  /// Class code, 24 bits: base class 23:16, sub-class 15:8, programming interface 7:0.
  public var classCode: UInt32
  public var subsystemVendorID: UInt16 = 0
  public var subsystemID: UInt16 = 0
  /// Header Type bit 7.
  public var multiFunction = false
  /// Interrupt Pin: 0 none, 1...4 INTA...INTD.
  public var interruptPin: UInt8 = 0
  /// BAR slots 0...5.
  public var bars: [BARDefinition?] = Array(repeating: nil, count: 6)
  public private(set) var standardCapabilities: [PlacedStandardCapability] = []
  public private(set) var extendedCapabilities: [PlacedExtendedCapability] = []

  public init(vendorID: UInt16, deviceID: UInt16, revisionID: UInt8 = 0, classCode: UInt32) {
    self.vendorID = vendorID
    self.deviceID = deviceID
    self.revisionID = revisionID
    self.classCode = classCode & 0xFF_FFFF
  }

  public mutating func add(_ capability: StandardCapability, at offset: Int) {
    standardCapabilities.append(PlacedStandardCapability(offset: offset, capability: capability))
  }

  public mutating func add(_ capability: ExtendedCapability, at offset: Int) {
    extendedCapabilities.append(PlacedExtendedCapability(offset: offset, capability: capability))
  }

  public func build() throws(ConfigSpaceLayoutError) -> PCIeConfigSpace {
    guard bars.count == 6 else { throw .barSlotCount(bars.count) }
    try validateBARs()
    for placed in standardCapabilities { try validate(placed) }
    for placed in extendedCapabilities { try validate(placed) }
    try validatePlacement(
      standardCapabilities.map { ($0.offset, $0.capability.size, Int($0.capability.id.rawValue)) },
      range: PCIHeaderRegister.end..<PCIHeaderRegister.extendedCapabilitiesStart)
    try validatePlacement(
      extendedCapabilities.map { ($0.offset, $0.capability.size, Int($0.capability.id.rawValue)) },
      range: PCIHeaderRegister.extendedCapabilitiesStart..<PCIeConfigSpace.size)
    if let first = extendedCapabilities.first, first.offset != PCIHeaderRegister.extendedCapabilitiesStart {
      throw .extendedListMustStartAt0x100(offset: first.offset)
    }

    var image = RegisterImage()
    writeHeader(into: &image)
    for (index, placed) in standardCapabilities.enumerated() {
      let next = index + 1 < standardCapabilities.count ? standardCapabilities[index + 1].offset : 0
      write(placed, next: next, into: &image)
    }
    for (index, placed) in extendedCapabilities.enumerated() {
      let next = index + 1 < extendedCapabilities.count ? extendedCapabilities[index + 1].offset : 0
      write(placed, next: next, into: &image)
    }
    var layoutBARs = bars
    for index in 0..<5 where bars[index]?.kind == .memory64 { layoutBARs[index + 1] = nil }
    let layout = ConfigSpaceLayout(
      bars: layoutBARs, standardCapabilities: standardCapabilities, extendedCapabilities: extendedCapabilities
    )
    return PCIeConfigSpace(layout: layout, image: image)
  }

  // MARK: Validation

  private func validateBARs() throws(ConfigSpaceLayoutError) {
    var index = 0
    while index < 6 {
      defer { index += 1 }
      guard let bar = bars[index] else { continue }
      guard bar.isValid else { throw .invalidBAR(index: index) }
      if bar.kind == .memory64 {
        guard index < 5, bars[index + 1] == nil else { throw .barSlotConflict(index: index) }
        index += 1
      }
    }
  }

  private func validatePlacement(_ items: [(offset: Int, size: Int, id: Int)], range: Range<Int>)
    throws(ConfigSpaceLayoutError)
  {
    var seenIDs: Set<Int> = []
    for (position, item) in items.enumerated() {
      guard item.offset >= range.lowerBound, item.offset <= range.upperBound - item.size else {
        throw .capabilityOutOfRange(offset: item.offset)
      }
      guard item.offset & 3 == 0 else { throw .misalignedCapability(offset: item.offset) }
      guard seenIDs.insert(item.id).inserted else { throw .duplicateCapability(offset: item.offset) }
      for other in items[..<position]
      where (item.offset..<(item.offset + item.size)).overlaps(other.offset..<(other.offset + other.size)) {
        throw .overlappingCapabilities(offset: item.offset)
      }
    }
  }

  private func validate(_ placed: PlacedStandardCapability) throws(ConfigSpaceLayoutError) {
    switch placed.capability {
    case .pciExpress(let pcie):
      guard pcie.maxPayloadSizeSupported <= 5 else { throw .invalidCapability(offset: placed.offset) }
    case .msix(let msix):
      guard (1...2048).contains(msix.tableSize), msix.tableOffset & 7 == 0, msix.pbaOffset & 7 == 0 else {
        throw .invalidCapability(offset: placed.offset)
      }
      for (bir, start, length) in [
        (msix.tableBIR, msix.tableOffset, msix.tableBytes), (msix.pbaBIR, msix.pbaOffset, msix.pbaBytes),
      ] {
        guard (0..<6).contains(bir), let bar = bars[bir], bar.kind != .io,
          UInt64(start) + length <= bar.size
        else { throw .msixStructureOutsideBAR(offset: placed.offset) }
      }
      let table = UInt64(msix.tableOffset)..<(UInt64(msix.tableOffset) + msix.tableBytes)
      let pba = UInt64(msix.pbaOffset)..<(UInt64(msix.pbaOffset) + msix.pbaBytes)
      if msix.tableBIR == msix.pbaBIR, table.overlaps(pba) {
        throw .msixTableOverlapsPBA(offset: placed.offset)
      }
    }
  }

  private func validate(_ placed: PlacedExtendedCapability) throws(ConfigSpaceLayoutError) {
    switch placed.capability {
    case .pasid(let pasid):
      guard pasid.maxWidth <= 20 else { throw .invalidCapability(offset: placed.offset) }
    case .ide(let ide):
      guard ide.isValid else { throw .invalidCapability(offset: placed.offset) }
    case .acs, .ats, .pri, .doe:
      break
    }
  }

  // MARK: Image

  private func writeHeader(into image: inout RegisterImage) {
    image.set(PCIHeaderRegister.vendorID, size: 2, UInt32(vendorID))
    image.set(PCIHeaderRegister.deviceID, size: 2, UInt32(deviceID))
    let hasIO = bars.contains { $0?.kind == .io }
    let commandWritable: PCICommand = [
      .memorySpace, .busMaster, .parityErrorResponse, .serr, .interruptDisable,
    ]
    image.set(
      PCIHeaderRegister.command, size: 2, 0,
      writable: UInt32(commandWritable.rawValue | (hasIO ? PCICommand.ioSpace.rawValue : 0)))
    let status: PCIStatus = standardCapabilities.isEmpty ? [] : .capabilitiesList
    image.set(
      PCIHeaderRegister.status, size: 2, UInt32(status.rawValue),
      writeOneToClear: UInt32(PCIStatus.writeOneToClear.rawValue))
    image.set(PCIHeaderRegister.revisionID, size: 4, UInt32(revisionID) | classCode << 8)
    image.set(PCIHeaderRegister.cacheLineSize, size: 1, 0, writable: 0xFF)
    image.set(
      PCIHeaderRegister.headerType, size: 1,
      UInt32(multiFunction ? PCIHeaderRegister.headerTypeMultiFunction : 0))
    var index = 0
    while index < 6 {
      defer { index += 1 }
      guard let bar = bars[index] else { continue }
      let masks = bar.writableMasks
      image.set(PCIHeaderRegister.bar0 + 4 * index, size: 4, bar.typeBits, writable: masks.lower)
      if bar.kind == .memory64 {
        image.set(PCIHeaderRegister.bar0 + 4 * (index + 1), size: 4, 0, writable: masks.upper)
        index += 1
      }
    }
    image.set(PCIHeaderRegister.subsystemVendorID, size: 2, UInt32(subsystemVendorID))
    image.set(PCIHeaderRegister.subsystemID, size: 2, UInt32(subsystemID))
    image.set(PCIHeaderRegister.capabilitiesPointer, size: 1, UInt32(standardCapabilities.first?.offset ?? 0))
    image.set(PCIHeaderRegister.interruptLine, size: 1, 0, writable: 0xFF)
    image.set(PCIHeaderRegister.interruptPin, size: 1, UInt32(interruptPin))
  }

  private func write(_ placed: PlacedStandardCapability, next: Int, into image: inout RegisterImage) {
    let base = placed.offset
    image.set(base, size: 2, UInt32(placed.capability.id.rawValue) | UInt32(next) << 8)
    switch placed.capability {
    case .pciExpress(let pcie):
      typealias R = PCIExpressCapabilityRegister
      image.set(base + R.capabilities, size: 2, 0x0002)  // version 2, PCI Express Endpoint
      image.set(
        base + R.deviceCapabilities, size: 4,
        UInt32(pcie.maxPayloadSizeSupported) | R.deviceCapabilitiesRoleBasedErrorReporting
          | (pcie.functionLevelResetCapable ? R.deviceCapabilitiesFLR : 0))
      image.set(
        base + R.deviceControl, size: 2, UInt32(PCIExpressCapability.deviceControlResetValue),
        writable: UInt32(PCIExpressCapability.deviceControlWritable))
      image.set(
        base + R.deviceStatus, size: 2, 0,
        writeOneToClear: UInt32(PCIExpressCapability.deviceStatusWriteOneToClear))
      image.set(base + R.linkCapabilities, size: 4, 0x0000_0011)  // 2.5 GT/s, x1
      image.set(base + R.linkStatus, size: 2, 0x0011)  // 2.5 GT/s, x1
    case .msix(let msix):
      typealias R = MSIXCapabilityRegister
      image.set(
        base + R.messageControl, size: 2, UInt32(msix.tableSize - 1),
        writable: UInt32(R.enable | R.functionMask))
      image.set(base + R.tableOffsetBIR, size: 4, msix.tableOffset | UInt32(msix.tableBIR))
      image.set(base + R.pbaOffsetBIR, size: 4, msix.pbaOffset | UInt32(msix.pbaBIR))
    }
  }

  private func write(_ placed: PlacedExtendedCapability, next: Int, into image: inout RegisterImage) {
    let base = placed.offset
    let capability = placed.capability
    image.set(
      base, size: 4, UInt32(capability.id.rawValue) | UInt32(capability.version) << 16 | UInt32(next) << 20)
    switch capability {
    case .acs(let acs):
      image.set(base + ACSCapabilityRegister.capability, size: 2, UInt32(acs.capabilities))
      image.set(base + ACSCapabilityRegister.control, size: 2, 0, writable: UInt32(acs.capabilities))
    case .ats(let ats):
      let value =
        UInt32(ats.invalidateQueueDepth) | (ats.pageAlignedRequest ? 1 << 5 : 0)
        | (ats.globalInvalidateSupported ? 1 << 6 : 0)
      image.set(base + ATSCapabilityRegister.capability, size: 2, value)
      image.set(
        base + ATSCapabilityRegister.control, size: 2, 0, writable: UInt32(ATSCapability.controlWritable))
    case .pri(let pri):
      typealias R = PRICapabilityRegister
      image.set(base + R.control, size: 2, 0, writable: UInt32(R.enable))
      image.set(
        base + R.status, size: 2,
        UInt32(R.statusStopped | (pri.responsePASIDRequired ? R.statusPASIDRequired : 0)),
        writeOneToClear: 0x0003)
      image.set(base + R.outstandingRequestCapacity, size: 4, pri.outstandingRequestCapacity)
      image.set(base + R.outstandingRequestAllocation, size: 4, 0, writable: 0xFFFF_FFFF)
    case .pasid(let pasid):
      image.set(base + PASIDCapabilityRegister.capability, size: 2, UInt32(pasid.capabilityRegister))
      image.set(base + PASIDCapabilityRegister.control, size: 2, 0, writable: UInt32(pasid.controlWritable))
    case .doe:
      break  // the header only; the mailbox registers belong to the owner's DOEMailbox
    case .ide(let ide):
      typealias R = IDECapabilityRegister
      image.set(base + R.capability, size: 4, ide.capabilityRegister)
      for (stream, blocks) in ide.selectiveStreamAddressBlocks.enumerated() {
        guard let relative = ide.selectiveStreamOffset(stream) else { continue }
        let block = base + relative
        image.set(block + R.streamCapability, size: 4, UInt32(blocks))
        image.set(block + R.streamControl, size: 4, 0, writable: R.streamControlWritable)
        image.set(block + R.streamStatus, size: 4, 0, writeOneToClear: R.streamStatusIntegrityCheckFail)
        image.set(block + R.streamRIDAssociation1, size: 4, 0, writable: R.ridAssociation1Writable)
        image.set(block + R.streamRIDAssociation2, size: 4, 0, writable: R.ridAssociation2Writable)
        for address in 0..<blocks {
          let association = block + R.selectiveStreamBlockHeaderSize + address * R.addressAssociationBlockSize
          image.set(association, size: 4, 0, writable: R.addressAssociation1Writable)
          image.set(association + 4, size: 4, 0, writable: 0xFFFF_FFFF)
          image.set(association + 8, size: 4, 0, writable: 0xFFFF_FFFF)
        }
      }
    }
  }
}
