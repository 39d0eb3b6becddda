public import CoveWire

/// The IDE Capability register (PCIe 6.x §7.9.26.2), as QUERY_RESP carries it. Only the fields
/// that size the register blocks that follow are decoded; the raw value is kept.
public struct IDECapabilityRegister: RawRepresentable, Hashable, Sendable {
  public var rawValue: UInt32
  public init(rawValue: UInt32) { self.rawValue = rawValue }

  /// Bit 0, Link IDE Stream Supported.
  public var linkIDESupported: Bool { rawValue & 1 != 0 }
  /// Bit 1, Selective IDE Streams Supported.
  public var selectiveIDESupported: Bool { rawValue & 2 != 0 }
  /// Bit 6, IDE_KM Protocol Supported (responder role).
  public var ideKMSupported: Bool { rawValue & 0x40 != 0 }
  /// Bits 15:13 + 1: Link IDE Stream register blocks, one per TC (0 without Link IDE).
  public var linkStreamCount: Int { linkIDESupported ? Int(rawValue >> 13 & 0x7) + 1 : 0 }
  /// Bits 23:16 + 1: Selective IDE Stream register blocks (0 without Selective IDE).
  public var selectiveStreamCount: Int { selectiveIDESupported ? Int(rawValue >> 16 & 0xFF) + 1 : 0 }

  /// `0x` and eight hex digits, as the register is usually written.
  public var hexDescription: String {
    let digits = String(rawValue, radix: 16)
    return "0x" + String(repeating: "0", count: 8 - digits.count) + digits
  }

  public init(
    linkStreams: Int, selectiveStreams: Int, ideKM: Bool = true, otherBits: UInt32 = 0
  ) {
    precondition((0...8).contains(linkStreams) && (0...256).contains(selectiveStreams))
    var value = otherBits & ~UInt32(0x00FF_E043)
    if linkStreams > 0 { value |= 1 | UInt32(linkStreams - 1) << 13 }
    if selectiveStreams > 0 { value |= 2 | UInt32(selectiveStreams - 1) << 16 }
    if ideKM { value |= 0x40 }
    rawValue = value
  }
}

/// One Link IDE Stream register block (§7.9.26.4): control then status, 2 DW.
public struct LinkIDEStreamRegisterBlock: Hashable, Sendable {
  public static let size = 8
  public var control: UInt32
  public var status: UInt32
  public init(control: UInt32 = 0, status: UInt32 = 0) {
    self.control = control
    self.status = status
  }
}

/// One Selective IDE Stream register block (§7.9.26.5): capability (bits 3:0 = number of Address
/// Association register blocks), control, status, RID Association 1 and 2, then the address
/// association blocks, 3 DW each.
public struct SelectiveIDEStreamRegisterBlock: Hashable, Sendable {
  /// At most 15 address association blocks: the count is a 4-bit field (§7.9.26.5.1).
  public static let maxAddressAssociations = 15
  public var capability: UInt32
  public var control: UInt32
  public var status: UInt32
  public var ridAssociation1: UInt32
  public var ridAssociation2: UInt32
  /// Each element is (Address Association 1, 2, 3).
  public var addressAssociations: [[UInt32]]

  public init(
    control: UInt32 = 0, status: UInt32 = 0, ridAssociation1: UInt32 = 0, ridAssociation2: UInt32 = 0,
    addressAssociations: [[UInt32]] = [], otherCapabilityBits: UInt32 = 0
  ) {
    precondition(addressAssociations.count <= Self.maxAddressAssociations)
    precondition(addressAssociations.allSatisfy { $0.count == 3 })
    capability = otherCapabilityBits & ~0xF | UInt32(addressAssociations.count)
    self.control = control
    self.status = status
    self.ridAssociation1 = ridAssociation1
    self.ridAssociation2 = ridAssociation2
    self.addressAssociations = addressAssociations
  }

  public var size: Int { 20 + 12 * addressAssociations.count }
}

/// QUERY_RESP (object 0x01, §6.33.3): the port's identity and its IDE Extended Capability
/// registers. Layout: object ID | reserved u8 | port index | dev/func | bus | segment |
/// max port index | IDE Capability u32 | IDE Control u32 | Link IDE Stream register blocks |
/// Selective IDE Stream register blocks.
///
/// The block counts are not on the wire: they follow from the IDE Capability register (one link
/// block per supported TC when Link IDE is supported; bits 23:16 + 1 selective blocks when Selective
/// IDE is supported) and each selective block's own capability register — the same walk host
/// software does over the capability in configuration space (§7.9.26). Decoding checks that the
/// bytes match that walk exactly (truncated or trailing otherwise), and a trailing-bytes error says
/// how many bytes lie beyond the blocks and which IDE Capability value sized them.
///
/// ``init(parsing:allowingZeroSurplus:)`` is the one relaxation: bytes beyond the walk that are all
/// zero. PCIe 6.x §6.33.3 defines QUERY_RESP as the port's IDE Extended Capability registers, and
/// §7.9.26 sizes that structure from the IDE Capability register alone, so a surplus describes no
/// register that exists; when it is all zero it cannot carry a stream, a key or an address that
/// the walk would miss, and the register blocks the capability does describe are decoded exactly as
/// in the strict case. This is what DMTF libspdm's sample IDE_KM device (spdm-emu
/// `pci_ide_km_device_lib_sample`) sends: a fixed array of 74 register DWs, all zero, after the
/// capability fields, whatever the capability says. A non-zero surplus is still malformed: those
/// would be register values the walk cannot place, and a TSM must not key a stream on a guess.
public struct IDEKMQueryResponse: Hashable, Sendable {
  public static let objectID = IDEKMObjectID.queryResponse
  /// Object ID through IDE Control.
  public static let fixedSize = 15

  public var portIndex: UInt8
  /// Device number bits 7:3, function bits 2:0 (§6.33.3).
  public var deviceFunction: UInt8
  public var bus: UInt8
  public var segment: UInt8
  public var maxPortIndex: UInt8
  public var capability: IDECapabilityRegister
  public var control: UInt32
  public var linkStreams: [LinkIDEStreamRegisterBlock]
  public var selectiveStreams: [SelectiveIDEStreamRegisterBlock]

  public init(
    portIndex: UInt8, deviceFunction: UInt8, bus: UInt8, segment: UInt8, maxPortIndex: UInt8,
    capability: IDECapabilityRegister, control: UInt32 = 0,
    linkStreams: [LinkIDEStreamRegisterBlock], selectiveStreams: [SelectiveIDEStreamRegisterBlock]
  ) {
    precondition(linkStreams.count == capability.linkStreamCount, "link blocks must match the capability")
    precondition(
      selectiveStreams.count == capability.selectiveStreamCount, "selective blocks must match the capability")
    self.portIndex = portIndex
    self.deviceFunction = deviceFunction
    self.bus = bus
    self.segment = segment
    self.maxPortIndex = maxPortIndex
    self.capability = capability
    self.control = control
    self.linkStreams = linkStreams
    self.selectiveStreams = selectiveStreams
  }

  /// The strict decoding: the bytes must be exactly the register blocks the IDE Capability
  /// register describes.
  public init(parsing bytes: [UInt8]) throws(WireError) {
    try self.init(parsing: bytes, allowingZeroSurplus: false)
  }

  /// Bytes after the register blocks the IDE Capability register describes, all zero, that
  /// ``init(parsing:allowingZeroSurplus:)`` accepted and ignored (0 for a strictly well-formed
  /// QUERY_RESP). Not part of the encoding.
  public var zeroSurplus = 0

  /// Decodes QUERY_RESP; with `allowingZeroSurplus`, bytes beyond the register blocks are accepted
  /// when every one of them is zero (counted in ``zeroSurplus``). See the type's documentation.
  public init(parsing bytes: [UInt8], allowingZeroSurplus: Bool) throws(WireError) {
    var reader = ByteReader(bytes)
    try readObjectID(&reader, Self.objectID)
    try reader.skip(1, "Reserved")
    portIndex = try reader.readU8("PortIndex")
    deviceFunction = try reader.readU8("Dev/Func Number")
    bus = try reader.readU8("Bus Number")
    segment = try reader.readU8("Segment")
    maxPortIndex = try reader.readU8("Max PortIndex")
    capability = IDECapabilityRegister(rawValue: try reader.readU32("IDE Capability Register"))
    control = try reader.readU32("IDE Control Register")
    linkStreams = []
    for _ in 0..<capability.linkStreamCount {
      linkStreams.append(
        LinkIDEStreamRegisterBlock(
          control: try reader.readU32("Link IDE Stream Control Register"),
          status: try reader.readU32("Link IDE Stream Status Register")))
    }
    selectiveStreams = []
    for _ in 0..<capability.selectiveStreamCount {
      let streamCapability = try reader.readU32("Selective IDE Stream Capability Register")
      let control = try reader.readU32("Selective IDE Stream Control Register")
      let status = try reader.readU32("Selective IDE Stream Status Register")
      let rid1 = try reader.readU32("IDE RID Association Register 1")
      let rid2 = try reader.readU32("IDE RID Association Register 2")
      var associations: [[UInt32]] = []
      for _ in 0..<Int(streamCapability & 0xF) {
        associations.append([
          try reader.readU32("IDE Address Association Register 1"),
          try reader.readU32("IDE Address Association Register 2"),
          try reader.readU32("IDE Address Association Register 3"),
        ])
      }
      var block = SelectiveIDEStreamRegisterBlock(
        control: control, status: status, ridAssociation1: rid1, ridAssociation2: rid2,
        addressAssociations: associations)
      block.capability = streamCapability
      selectiveStreams.append(block)
    }
    if !reader.isAtEnd {
      let end = reader.offset
      let surplus = reader.readRest()
      let allZero = surplus.allSatisfy { $0 == 0 }
      guard allowingZeroSurplus, allZero else {
        throw WireError(
          .trailingBytes, at: end,
          field:
            "QUERY_RESP: \(surplus.count) \(allZero ? "zero " : "")byte\(surplus.count == 1 ? "" : "s") beyond the register blocks IDE Capability \(capability.hexDescription) describes (\(capability.linkStreamCount) Link IDE, \(capability.selectiveStreamCount) Selective IDE)"
        )
      }
      zeroSurplus = surplus.count
    }
  }

  public func encode() -> [UInt8] {
    var writer = ByteWriter(capacity: 64)
    writer.append(Self.objectID.rawValue)
    writer.append(UInt8(0))
    writer.append(portIndex)
    writer.append(deviceFunction)
    writer.append(bus)
    writer.append(segment)
    writer.append(maxPortIndex)
    writer.append(capability.rawValue)
    writer.append(control)
    for block in linkStreams {
      writer.append(block.control)
      writer.append(block.status)
    }
    for block in selectiveStreams {
      writer.append(block.capability)
      writer.append(block.control)
      writer.append(block.status)
      writer.append(block.ridAssociation1)
      writer.append(block.ridAssociation2)
      for association in block.addressAssociations {
        for register in association { writer.append(register) }
      }
    }
    return writer.bytes
  }
}
