/// The 4 KiB PCIe configuration space of one type 0 function (PCIe 6.x §7.5, §7.6): header, standard
/// capability list, extended capability list.
///
/// A register file with per-bit attributes, as hardware has: every byte carries a writable mask (RW
/// bits) and a write-1-to-clear mask (RW1C bits); every other bit is RO and ignores writes. Reads of
/// unimplemented space return 0. ``write(offset:size:value:)`` reports what changed as
/// ``ConfigSpaceEvent``s so the device model and the TDISP layer react without decoding registers.
///
/// DOE: the configuration space holds only the DOE capability header; the owner (the device, which
/// holds a ``DOEMailbox``) receives DW writes inside the capability as ``ConfigSpaceEvent/doe(offset:value:)``
/// and passes its mailbox to ``read(offset:size:doeMailbox:)`` so reads of the mailbox registers see
/// the mailbox. ``layout``'s DOE offset says where the window is.
///
/// Accesses: 1, 2 or 4 bytes, naturally aligned, inside 4 KiB (a configuration request cannot
/// express anything else, PCIe 6.x §2.2.7). Anything else is ignored: writes report
/// ``ConfigSpaceEvent/ignoredAccess(offset:size:reason:)``, reads return 0. Nothing traps on caller
/// input.
///
/// Not modelled: sticky bits (none of the implemented registers is sticky), the expansion ROM BAR
/// (reads 0), link state (Link Control hardwired to 0), MSI, power management, AER.
public struct PCIeConfigSpace: Sendable {
  /// Configuration space size of a PCIe function (PCIe 6.x §7.2.2).
  public static let size = 0x1000

  /// Where everything is.
  public let layout: ConfigSpaceLayout

  private var bytes: [UInt8]
  private let writable: [UInt8]
  private let writeOneToClear: [UInt8]
  /// The values after a conventional reset or FLR. All implemented RW state returns to these; RO
  /// values are part of the image, so they survive.
  private let resetImage: [UInt8]

  init(layout: ConfigSpaceLayout, image: RegisterImage) {
    self.layout = layout
    self.bytes = image.bytes
    self.writable = image.writable
    self.writeOneToClear = image.writeOneToClear
    self.resetImage = image.bytes
  }

  // MARK: Access checks

  /// Why an access of this shape would be ignored, or nil when it is valid.
  public static func accessProblem(offset: Int, size: Int) -> IgnoredAccessReason? {
    guard size == 1 || size == 2 || size == 4 else { return .invalidSize }
    guard offset >= 0, offset <= Self.size - size else { return .outOfRange }
    guard offset % size == 0 else { return .misaligned }
    return nil
  }

  // MARK: Reads

  /// Reads `size` bytes (1, 2 or 4) at `offset`, little-endian. Invalid accesses and unimplemented
  /// registers read 0. Inside the DOE capability only the header is held here; use
  /// ``read(offset:size:doeMailbox:)`` for the mailbox registers.
  public func read(offset: Int, size: Int) -> UInt32 {
    guard Self.accessProblem(offset: offset, size: size) == nil else { return 0 }
    var value: UInt32 = 0
    for index in 0..<size { value |= UInt32(bytes[offset + index]) << (8 * index) }
    return value
  }

  /// Reads like ``read(offset:size:)`` but takes registers 0x04..<0x18 of the DOE capability from
  /// the owner's mailbox (reads of a ``DOEMailbox`` have no side effects, PCIe 6.x §6.30.2).
  public func read(offset: Int, size: Int, doeMailbox: DOEMailbox) -> UInt32 {
    guard Self.accessProblem(offset: offset, size: size) == nil, let doe = layout.doeOffset,
      offset >= doe + DOERegister.capabilities, offset < doe + DOERegister.capabilitySize
    else { return read(offset: offset, size: size) }
    let relative = offset - doe
    let dword = doeMailbox.readRegister(offset: relative & ~3)
    guard size < 4 else { return dword }
    return (dword >> (UInt32(relative & 3) * 8)) & ((1 << (UInt32(size) * 8)) - 1)
  }

  // MARK: Writes

  /// Writes `size` bytes (1, 2 or 4) of `value` at `offset`: RW bits take the new value, RW1C bits
  /// written as 1 clear, RO bits keep theirs. Returns what the write did, in this order: ignored
  /// access, MSE/BME 1→0, BARs written, control registers changed, IDE written, DOE write, FLR.
  public mutating func write(offset: Int, size: Int, value: UInt32) -> [ConfigSpaceEvent] {
    if let reason = Self.accessProblem(offset: offset, size: size) {
      return [.ignoredAccess(offset: offset, size: size, reason: reason)]
    }
    let range = offset..<(offset + size)

    if let doe = layout.doeOffset, range.overlaps(doe..<(doe + DOERegister.capabilitySize)) {
      guard size == 4 else {
        return [.ignoredAccess(offset: offset, size: size, reason: .doeRequiresDWordAccess)]
      }
      return [.doe(offset: offset - doe, value: value)]
    }

    let watched = watchedRegisters()
    let before = watched.map { load16($0.offset) }
    let commandBefore = PCICommand(rawValue: load16(PCIHeaderRegister.command))

    for index in 0..<size {
      let at = offset + index
      let byte = UInt8(truncatingIfNeeded: value >> (8 * index))
      var new = (bytes[at] & ~writable[at]) | (byte & writable[at])
      new &= ~(byte & writeOneToClear[at])
      bytes[at] = new
    }
    updatePRIStopped()

    var events: [ConfigSpaceEvent] = []
    let commandAfter = PCICommand(rawValue: load16(PCIHeaderRegister.command))
    if commandBefore.contains(.memorySpace), !commandAfter.contains(.memorySpace) {
      events.append(.memorySpaceDisabled)
    }
    if commandBefore.contains(.busMaster), !commandAfter.contains(.busMaster) {
      events.append(.busMasterDisabled)
    }
    for index in 0..<6 {
      let bar = PCIHeaderRegister.bar0 + 4 * index
      if range.overlaps(bar..<(bar + 4)) { events.append(.barWritten(index: index)) }
    }
    for (register, old) in zip(watched, before) {
      let new = load16(register.offset)
      if new != old { events.append(register.event(old, new)) }
    }
    if let ide = layout.offset(of: .ide),
      let ideSize = layout.extendedCapabilities.first(where: { $0.offset == ide })?.capability.size,
      range.overlaps(ide..<(ide + ideSize))
    {
      events.append(.ideRegisterWritten(offset: offset - ide))
    }
    if initiatesFLR(range: range, value: value) {
      bytes = resetImage
      events.append(.functionLevelReset)
    }
    return events
  }

  /// Returns every register to its reset value, as a conventional reset or FLR does.
  public mutating func reset() {
    bytes = resetImage
  }

  /// Sets bits as the function's hardware does — RO status such as an IDE stream's state, or RW1C
  /// error bits being raised — bypassing the write masks. Reports nothing. Returns false and changes
  /// nothing for an invalid access.
  @discardableResult
  public mutating func hardwareWrite(offset: Int, size: Int, value: UInt32) -> Bool {
    guard Self.accessProblem(offset: offset, size: size) == nil else { return false }
    for index in 0..<size { bytes[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * index)) }
    return true
  }

  // MARK: Decoded state

  /// The Command register.
  public var command: PCICommand { PCICommand(rawValue: load16(PCIHeaderRegister.command)) }

  /// The Status register.
  public var status: PCIStatus { PCIStatus(rawValue: load16(PCIHeaderRegister.status)) }

  /// The address BAR `index` decodes (type bits masked off; both halves of a 64-bit BAR), or nil
  /// for an unimplemented BAR or the upper half of a 64-bit one.
  public func barAddress(_ index: Int) -> UInt64? {
    guard layout.bars.indices.contains(index), let bar = layout.bars[index] else { return nil }
    let register = PCIHeaderRegister.bar0 + 4 * index
    let lower = UInt64(read(offset: register, size: 4))
    switch bar.kind {
    case .io: return lower & ~0x3
    case .memory32: return lower & ~0xF
    case .memory64: return (UInt64(read(offset: register + 4, size: 4)) << 32 | lower) & ~0xF
    }
  }

  // MARK: Internals

  private func load16(_ offset: Int) -> UInt16 {
    UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8
  }

  private struct WatchedRegister {
    var offset: Int
    var event: (UInt16, UInt16) -> ConfigSpaceEvent
  }

  private func watchedRegisters() -> [WatchedRegister] {
    var registers: [WatchedRegister] = []
    if let msix = layout.offset(of: .msix) {
      registers.append(
        WatchedRegister(offset: msix + MSIXCapabilityRegister.messageControl) {
          .msixControlChanged(old: $0, new: $1)
        })
    }
    if let acs = layout.offset(of: .acs) {
      registers.append(
        WatchedRegister(offset: acs + ACSCapabilityRegister.control) {
          .acsControlChanged(old: $0, new: $1)
        })
    }
    if let ats = layout.offset(of: .ats) {
      registers.append(
        WatchedRegister(offset: ats + ATSCapabilityRegister.control) {
          .atsControlChanged(old: $0, new: $1)
        })
    }
    if let pri = layout.offset(of: .pri) {
      registers.append(
        WatchedRegister(offset: pri + PRICapabilityRegister.control) {
          .priControlChanged(old: $0, new: $1)
        })
    }
    if let pasid = layout.offset(of: .pasid) {
      registers.append(
        WatchedRegister(offset: pasid + PASIDCapabilityRegister.control) {
          .pasidControlChanged(old: $0, new: $1)
        })
    }
    return registers
  }

  /// Page Request Status.Stopped (RO) reads 1 while the interface is disabled: Cove has no
  /// outstanding page requests to drain, so disabling stops it at once (PCIe 6.x §10.5.2.3).
  private mutating func updatePRIStopped() {
    guard let pri = layout.offset(of: .pri) else { return }
    let enabled = load16(pri + PRICapabilityRegister.control) & PRICapabilityRegister.enable != 0
    let statusHigh = pri + PRICapabilityRegister.status + 1
    if enabled { bytes[statusHigh] &= ~0x01 } else { bytes[statusHigh] |= 0x01 }
  }

  /// Whether the write sets Device Control.Initiate FLR on an FLR-capable function.
  private func initiatesFLR(range: Range<Int>, value: UInt32) -> Bool {
    guard let placed = layout.standardCapabilities.first(where: { $0.capability.id == .pciExpress }),
      case .pciExpress(let pcie) = placed.capability, pcie.functionLevelResetCapable
    else { return false }
    let flrByte = placed.offset + PCIExpressCapabilityRegister.deviceControl + 1
    guard range.contains(flrByte) else { return false }
    return (value >> (8 * UInt32(flrByte - range.lowerBound))) & 0x80 != 0
  }
}

/// Where a function's BARs and capabilities are, as the builder laid them out.
public struct ConfigSpaceLayout: Hashable, Sendable {
  /// Six BAR slots; nil for unimplemented slots and for the upper half of a 64-bit BAR.
  public let bars: [BARDefinition?]
  /// The standard capabilities in list order.
  public let standardCapabilities: [PlacedStandardCapability]
  /// The extended capabilities in list order (the first at 0x100).
  public let extendedCapabilities: [PlacedExtendedCapability]

  public func offset(of id: PCICapabilityID) -> Int? {
    standardCapabilities.first { $0.capability.id == id }?.offset
  }

  public func offset(of id: PCIExtendedCapabilityID) -> Int? {
    extendedCapabilities.first { $0.capability.id == id }?.offset
  }

  /// Where the DOE capability is: the owner routes this window to its ``DOEMailbox``.
  public var doeOffset: Int? { offset(of: .doe) }
}

public struct PlacedStandardCapability: Hashable, Sendable {
  public var offset: Int
  public var capability: StandardCapability
  public init(offset: Int, capability: StandardCapability) {
    self.offset = offset
    self.capability = capability
  }
}

public struct PlacedExtendedCapability: Hashable, Sendable {
  public var offset: Int
  public var capability: ExtendedCapability
  public init(offset: Int, capability: ExtendedCapability) {
    self.offset = offset
    self.capability = capability
  }
}

/// Bytes and per-bit attribute masks, filled by the builder.
struct RegisterImage {
  var bytes = [UInt8](repeating: 0, count: PCIeConfigSpace.size)
  var writable = [UInt8](repeating: 0, count: PCIeConfigSpace.size)
  var writeOneToClear = [UInt8](repeating: 0, count: PCIeConfigSpace.size)

  mutating func set(
    _ offset: Int, size: Int, _ value: UInt32, writable rw: UInt32 = 0, writeOneToClear w1c: UInt32 = 0
  ) {
    for index in 0..<size {
      let shift = UInt32(8 * index)
      bytes[offset + index] = UInt8(truncatingIfNeeded: value >> shift)
      writable[offset + index] = UInt8(truncatingIfNeeded: rw >> shift)
      writeOneToClear[offset + index] = UInt8(truncatingIfNeeded: w1c >> shift)
    }
  }
}
