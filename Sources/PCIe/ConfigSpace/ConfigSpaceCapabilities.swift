/// A Base Address Register as the device implements it: its kind and size. The size decides which
/// address bits are writable, which is how software sizes the BAR: write all ones, read back
/// `~(size - 1)` with the RO type bits below (PCIe 6.x §7.5.1.2.1).
public struct BARDefinition: Hashable, Sendable {
  public enum Kind: Hashable, Sendable {
    /// 32-bit memory BAR: type bits 2:1 = 00b.
    case memory32
    /// 64-bit memory BAR: type bits 2:1 = 10b; occupies this slot and the next.
    case memory64
    /// I/O BAR: bit 0 = 1.
    case io
  }

  public var kind: Kind
  /// Size in bytes, a power of two: at least 16 for memory, 4...256 for I/O; at most 2 GiB for
  /// a 32-bit memory BAR.
  public var size: UInt64
  /// Prefetchable bit 3 (memory BARs only).
  public var prefetchable: Bool

  public init(kind: Kind, size: UInt64, prefetchable: Bool = false) {
    self.kind = kind
    self.size = size
    self.prefetchable = prefetchable
  }

  public static func memory32(size: UInt64, prefetchable: Bool = false) -> BARDefinition {
    BARDefinition(kind: .memory32, size: size, prefetchable: prefetchable)
  }

  public static func memory64(size: UInt64, prefetchable: Bool = false) -> BARDefinition {
    BARDefinition(kind: .memory64, size: size, prefetchable: prefetchable)
  }

  public static func io(size: UInt64) -> BARDefinition {
    BARDefinition(kind: .io, size: size)
  }

  /// The RO low bits of the (lower) BAR register.
  var typeBits: UInt32 {
    switch kind {
    case .io: return 0x1
    case .memory32: return prefetchable ? 0x8 : 0x0
    case .memory64: return 0x4 | (prefetchable ? 0x8 : 0x0)
    }
  }

  /// Writable bits of the lower register and, for 64-bit BARs, the upper one.
  var writableMasks: (lower: UInt32, upper: UInt32) {
    let address = ~(size &- 1)
    switch kind {
    case .io: return (UInt32(truncatingIfNeeded: address) & 0xFFFF_FFFC, 0)
    case .memory32: return (UInt32(truncatingIfNeeded: address) & 0xFFFF_FFF0, 0)
    case .memory64:
      return (UInt32(truncatingIfNeeded: address) & 0xFFFF_FFF0, UInt32(truncatingIfNeeded: address >> 32))
    }
  }

  var isValid: Bool {
    guard size != 0, size & (size &- 1) == 0 else { return false }
    switch kind {
    case .io: return size >= 4 && size <= 256 && !prefetchable
    case .memory32: return size >= 16 && size <= 1 << 31
    case .memory64: return size >= 16 && size <= 1 << 63
    }
  }
}

/// PCI Express Capability (ID 0x10) of an endpoint, version 2 (PCIe 6.x §7.5.3). Cove models no
/// link: Link Capabilities/Status report 2.5 GT/s x1 and Link Control is hardwired to 0.
public struct PCIExpressCapability: Hashable, Sendable {
  /// Device Capabilities bit 28. Without it, Initiate FLR is ignored.
  public var functionLevelResetCapable: Bool
  /// Device Capabilities bits 2:0, Max_Payload_Size Supported: 0 = 128 B, 1 = 256 B, … 5 = 4 KiB.
  public var maxPayloadSizeSupported: UInt8

  public init(functionLevelResetCapable: Bool = true, maxPayloadSizeSupported: UInt8 = 1) {
    self.functionLevelResetCapable = functionLevelResetCapable
    self.maxPayloadSizeSupported = maxPayloadSizeSupported
  }

  /// Device Control after reset: Enable Relaxed Ordering (bit 4) and Enable No Snoop (bit 11) set,
  /// Max_Read_Request_Size 010b = 512 B (bits 14:12), as PCIe 6.x §7.5.3.4 specifies.
  public static let deviceControlResetValue: UInt16 = 0x2810
  /// Device Control RW bits: error reporting enables 3:0, Relaxed Ordering 4, Max_Payload_Size 7:5,
  /// Extended Tag 8, No Snoop 11, Max_Read_Request_Size 14:12. Phantom Functions (9) and Aux Power
  /// PM (10) are hardwired to 0; Initiate FLR (15) is handled as a command and reads 0.
  public static let deviceControlWritable: UInt16 = 0x79FF
  /// Device Status RW1C bits: Correctable, Non-Fatal, Fatal, Unsupported Request Detected.
  public static let deviceStatusWriteOneToClear: UInt16 = 0x000F
}

/// MSI-X Capability (ID 0x11, PCIe 6.x §7.7.2). The table and PBA live in a memory BAR, not in
/// configuration space; only Message Control's Enable and Function Mask are writable here.
public struct MSIXCapability: Hashable, Sendable {
  /// Number of table entries, 1...2048 (encoded N-1 in Message Control bits 10:0).
  public var tableSize: Int
  /// BAR index (BIR) holding the table, and the 8-byte-aligned offset inside it.
  public var tableBIR: Int
  public var tableOffset: UInt32
  /// BAR index and 8-byte-aligned offset of the Pending Bit Array.
  public var pbaBIR: Int
  public var pbaOffset: UInt32

  public init(tableSize: Int, tableBIR: Int, tableOffset: UInt32, pbaBIR: Int, pbaOffset: UInt32) {
    self.tableSize = tableSize
    self.tableBIR = tableBIR
    self.tableOffset = tableOffset
    self.pbaBIR = pbaBIR
    self.pbaOffset = pbaOffset
  }

  /// Bytes of the table (16 per entry, PCIe 6.x §7.7.2.5) and of the PBA (one bit per entry,
  /// QWORD granular).
  public var tableBytes: UInt64 { UInt64(tableSize) * 16 }
  public var pbaBytes: UInt64 { UInt64((tableSize + 63) / 64) * 8 }
}

/// ACS Extended Capability (PCIe 6.x §7.7.11) without an egress control vector.
public struct ACSCapability: Hashable, Sendable {
  /// ACS Capability bits 6:0 (Source Validation, Translation Blocking, P2P Request Redirect,
  /// P2P Completion Redirect, Upstream Forwarding, P2P Egress Control, Direct Translated P2P). The
  /// same control bits are RW; the others are hardwired to 0.
  public var capabilities: UInt16

  public init(capabilities: UInt16) { self.capabilities = capabilities & 0x7F }
}

/// ATS Extended Capability (PCIe 6.x §10.5.1).
public struct ATSCapability: Hashable, Sendable {
  /// Invalidate Queue Depth, bits 4:0 (0 means 32).
  public var invalidateQueueDepth: UInt8
  public var pageAlignedRequest: Bool
  public var globalInvalidateSupported: Bool

  public init(
    invalidateQueueDepth: UInt8 = 0, pageAlignedRequest: Bool = true, globalInvalidateSupported: Bool = false
  ) {
    self.invalidateQueueDepth = invalidateQueueDepth & 0x1F
    self.pageAlignedRequest = pageAlignedRequest
    self.globalInvalidateSupported = globalInvalidateSupported
  }

  /// ATS Control RW bits: Smallest Translation Unit 4:0, Enable 15.
  public static let controlWritable: UInt16 = 0x801F
}

/// Page Request Extended Capability (PCIe 6.x §10.5.2).
public struct PRICapability: Hashable, Sendable {
  /// Outstanding Page Request Capacity (RO).
  public var outstandingRequestCapacity: UInt32
  /// PRG Response PASID Required, Status bit 15 (RO).
  public var responsePASIDRequired: Bool

  public init(outstandingRequestCapacity: UInt32 = 32, responsePASIDRequired: Bool = true) {
    self.outstandingRequestCapacity = outstandingRequestCapacity
    self.responsePASIDRequired = responsePASIDRequired
  }
}

/// PASID Extended Capability (PCIe 6.x §7.8.9).
public struct PASIDCapability: Hashable, Sendable {
  /// Max PASID Width, 0...20 bits.
  public var maxWidth: UInt8
  public var executePermissionSupported: Bool
  public var privilegedModeSupported: Bool

  public init(
    maxWidth: UInt8 = 20, executePermissionSupported: Bool = false, privilegedModeSupported: Bool = false
  ) {
    self.maxWidth = maxWidth
    self.executePermissionSupported = executePermissionSupported
    self.privilegedModeSupported = privilegedModeSupported
  }

  var capabilityRegister: UInt16 {
    UInt16(maxWidth) << 8 | (executePermissionSupported ? 0x2 : 0) | (privilegedModeSupported ? 0x4 : 0)
  }

  var controlWritable: UInt16 {
    0x1 | (executePermissionSupported ? 0x2 : 0) | (privilegedModeSupported ? 0x4 : 0)
  }
}

/// DOE Extended Capability (PCIe 6.x §7.9.24). The configuration space holds only the header; the
/// registers at 0x04..<0x18 belong to the owner's ``DOEMailbox`` (see ``PCIeConfigSpace``).
public struct DOECapability: Hashable, Sendable {
  /// Capability version, header bits 19:16.
  public var version: UInt8

  public init(version: UInt8 = 1) { self.version = version & 0xF }
}

/// IDE Extended Capability (PCIe 6.x §7.9.26), Selective IDE Streams only.
public struct IDECapability: Hashable, Sendable {
  /// One entry per Selective IDE Stream register block: its number of address association
  /// register blocks (0...15).
  public var selectiveStreamAddressBlocks: [Int]
  /// IDE Capability bit 6.
  public var ideKMSupported: Bool
  /// Supported Algorithms, bits 12:8: 0 = AES-GCM 256-bit key, 96-bit MAC.
  public var supportedAlgorithms: UInt8

  public init(
    selectiveStreamAddressBlocks: [Int] = [1], ideKMSupported: Bool = true, supportedAlgorithms: UInt8 = 0
  ) {
    self.selectiveStreamAddressBlocks = selectiveStreamAddressBlocks
    self.ideKMSupported = ideKMSupported
    self.supportedAlgorithms = supportedAlgorithms & 0x1F
  }

  var capabilityRegister: UInt32 {
    var value: UInt32 = UInt32(supportedAlgorithms) << 8
    if !selectiveStreamAddressBlocks.isEmpty {
      value |= IDECapabilityRegister.capabilitySelectiveSupported
      value |= UInt32(selectiveStreamAddressBlocks.count - 1) << 16
    }
    if ideKMSupported { value |= IDECapabilityRegister.capabilityIDEKMSupported }
    return value
  }

  /// Offset, relative to the capability, of Selective IDE Stream register block `index`.
  public func selectiveStreamOffset(_ index: Int) -> Int? {
    guard selectiveStreamAddressBlocks.indices.contains(index) else { return nil }
    var offset = IDECapabilityRegister.firstSelectiveStream
    for blocks in selectiveStreamAddressBlocks[..<index] {
      // Wrapping arithmetic: an invalid capability (the builder rejects it) must not trap here.
      offset =
        offset &+ IDECapabilityRegister.selectiveStreamBlockHeaderSize
        &+ blocks &* IDECapabilityRegister.addressAssociationBlockSize
    }
    return offset
  }

  var size: Int {
    selectiveStreamAddressBlocks.reduce(IDECapabilityRegister.firstSelectiveStream) {
      $0 &+ IDECapabilityRegister.selectiveStreamBlockHeaderSize
        &+ $1 &* IDECapabilityRegister.addressAssociationBlockSize
    }
  }

  var isValid: Bool {
    selectiveStreamAddressBlocks.count <= 256
      && selectiveStreamAddressBlocks.allSatisfy { (0...15).contains($0) }
  }
}

/// A capability in the standard list (0x40..<0x100).
public enum StandardCapability: Hashable, Sendable {
  case pciExpress(PCIExpressCapability)
  case msix(MSIXCapability)

  public var id: PCICapabilityID {
    switch self {
    case .pciExpress: return .pciExpress
    case .msix: return .msix
    }
  }

  public var size: Int {
    switch self {
    case .pciExpress: return PCIExpressCapabilityRegister.size
    case .msix: return MSIXCapabilityRegister.size
    }
  }
}

/// A capability in the extended list (0x100..<0x1000).
public enum ExtendedCapability: Hashable, Sendable {
  case acs(ACSCapability)
  case ats(ATSCapability)
  case pri(PRICapability)
  case pasid(PASIDCapability)
  case doe(DOECapability)
  case ide(IDECapability)

  public var id: PCIExtendedCapabilityID {
    switch self {
    case .acs: return .acs
    case .ats: return .ats
    case .pri: return .pri
    case .pasid: return .pasid
    case .doe: return .doe
    case .ide: return .ide
    }
  }

  public var size: Int {
    switch self {
    case .acs: return ACSCapabilityRegister.size
    case .ats: return ATSCapabilityRegister.size
    case .pri: return PRICapabilityRegister.size
    case .pasid: return PASIDCapabilityRegister.size
    case .doe: return DOERegister.capabilitySize
    case .ide(let ide): return ide.size
    }
  }

  /// Capability version, header bits 19:16.
  var version: UInt8 {
    switch self {
    case .doe(let doe): return doe.version
    default: return 1
    }
  }
}
