public import CoveWire
public import IOMMU
public import PCIe

/// One fault event as the guest reads it from the fault registers: 32 bytes, little-endian.
///
/// ```
/// byte  0      reason code (VIOMMUFaultReasonCode)
/// byte  1      flags: bit 0 PV (PASID valid), bit 1 W (the access was a write; clear: read),
///              bit 2 DV (domain valid); bits 7:3 reserved
/// byte  2      stage-1 level (reasons 3–6), else 0
/// byte  3      reserved
/// bytes 4–5    requester ID
/// bytes 6–7    reserved
/// bytes 8–11   PASID, bits 19:0 (when PV); bits 31:20 reserved
/// bytes 12–15  domain ID (when DV: the request had an attachment)
/// bytes 16–23  IOVA of the request
/// bytes 24–31  guest-physical address: the stage-1 entry (reasons 5, 6) or the output (reason 7), else 0
/// ```
///
/// Like a VT-d fault recording register it names the requester, the address, the access type and the
/// reason; unlike it, it also names the stage-1 level and the guest-physical address that failed, so a
/// guest driver can tell a hole in its own tables from a page the platform took away.
public struct VIOMMUFaultRecord: Hashable, Sendable, CustomStringConvertible {
  public var reason: VIOMMUFaultReasonCode
  /// The stage-1 level, 0 when the reason names none.
  public var level: UInt8
  public var requester: RequesterID
  public var pasid: PASID?
  public var access: IOAccess
  /// The domain of the attachment the request went through; nil when it had none.
  public var domain: DomainID?
  public var iova: IOVA
  /// The guest-physical address the reason names, 0 when it names none.
  public var guestAddress: PhysicalAddress

  public static let size = 32

  public init(
    reason: VIOMMUFaultReasonCode, level: UInt8, requester: RequesterID, pasid: PASID?, access: IOAccess,
    domain: DomainID?, iova: IOVA, guestAddress: PhysicalAddress
  ) {
    self.reason = reason
    self.level = level
    self.requester = requester
    self.pasid = pasid
    self.access = access
    self.domain = domain
    self.iova = iova
    self.guestAddress = guestAddress
  }

  /// Decodes a 32-byte record.
  ///
  /// - Throws: `WireError`: `.truncated` / `.trailingBytes` for any length but 32; `.invalidValue` for
  ///   a reserved bit or byte set, PASID bits 31:20 set, or a PASID or domain field that is not zero
  ///   while its valid flag is clear.
  public init(parsing bytes: [UInt8]) throws(WireError) {
    var reader = ByteReader(bytes)
    reason = VIOMMUFaultReasonCode(rawValue: try reader.readU8("reason"))
    let flags = try reader.readU8("flags")
    level = try reader.readU8("level")
    let reserved3 = try reader.readU8("reserved")
    requester = RequesterID(rawValue: try reader.readU16("requester ID"))
    let reserved6 = try reader.readU16("reserved")
    let pasidField = try reader.readU32("PASID")
    let domainField = try reader.readU32("domain ID")
    iova = IOVA(try reader.readU64("IOVA"))
    guestAddress = PhysicalAddress(try reader.readU64("guest-physical address"))
    try reader.expectEnd("vIOMMU fault record")

    func invalid(_ offset: Int, _ field: String) -> WireError {
      WireError(.invalidValue, at: offset, field: field)
    }
    guard flags & ~(Self.pasidValidFlag | Self.writeFlag | Self.domainValidFlag) == 0 else {
      throw invalid(1, "flags (bits 7:3 reserved)")
    }
    guard reserved3 == 0 else { throw invalid(3, "reserved") }
    guard reserved6 == 0 else { throw invalid(6, "reserved") }
    if flags & Self.pasidValidFlag != 0 {
      guard pasidField < PASID.limit else { throw invalid(8, "PASID (bits 31:20 reserved)") }
      pasid = PASID(pasidField)
    } else {
      guard pasidField == 0 else { throw invalid(8, "PASID (reserved without PV)") }
      pasid = nil
    }
    if flags & Self.domainValidFlag != 0 {
      domain = DomainID(rawValue: domainField)
    } else {
      guard domainField == 0 else { throw invalid(12, "domain ID (reserved without DV)") }
      domain = nil
    }
    access = flags & Self.writeFlag != 0 ? .write : .read
  }

  /// The 32 bytes; a PASID beyond 20 bits cannot be encoded (a precondition failure: the vIOMMU never
  /// records one, a request cannot carry one).
  public func encode() -> [UInt8] {
    precondition(pasid.map { $0.rawValue < PASID.limit } ?? true, "a fault record carries a 20-bit PASID")
    var flags: UInt8 = 0
    if pasid != nil { flags |= Self.pasidValidFlag }
    if access == .write { flags |= Self.writeFlag }
    if domain != nil { flags |= Self.domainValidFlag }
    var writer = ByteWriter(capacity: Self.size)
    writer.append(reason.rawValue)
    writer.append(flags)
    writer.append(level)
    writer.append(UInt8(0))
    writer.append(requester.rawValue)
    writer.append(UInt16(0))
    writer.append(pasid?.rawValue ?? 0)
    writer.append(domain?.rawValue ?? 0)
    writer.append(iova.rawValue)
    writer.append(guestAddress.rawValue)
    return writer.bytes
  }

  /// The record as the four 64-bit words the fault-record registers show.
  public var words: [UInt64] {
    let bytes = encode()
    return (0..<4).map { word in
      (0..<8).reduce(UInt64(0)) { value, byte in value | UInt64(bytes[word * 8 + byte]) << (8 * UInt64(byte))
      }
    }
  }

  public var description: String {
    let what = reason.describe(level: Int(level), guestAddress: guestAddress)
    return "fault \(requester)\(pasid.map { " \($0)" } ?? "") \(access) \(iova): \(what)"
  }

  static let pasidValidFlag: UInt8 = 1 << 0
  static let writeFlag: UInt8 = 1 << 1
  static let domainValidFlag: UInt8 = 1 << 2
}

/// The fault reason code of a fault record (byte 0). A struct (STYLE.md rule 3): a guest driver built
/// for a later interface version decodes codes it does not know without failing.
public struct VIOMMUFaultReasonCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
  public var rawValue: UInt8
  public init(rawValue: UInt8) { self.rawValue = rawValue }

  public static let noAttachment = VIOMMUFaultReasonCode(rawValue: 0x01)
  public static let addressOutOfRange = VIOMMUFaultReasonCode(rawValue: 0x02)
  public static let stage1NotPresent = VIOMMUFaultReasonCode(rawValue: 0x03)
  public static let stage1ReservedBits = VIOMMUFaultReasonCode(rawValue: 0x04)
  public static let stage1TableNotMapped = VIOMMUFaultReasonCode(rawValue: 0x05)
  public static let stage1TableReadRefused = VIOMMUFaultReasonCode(rawValue: 0x06)
  public static let stage2OutputNotMapped = VIOMMUFaultReasonCode(rawValue: 0x07)
  public static let permission = VIOMMUFaultReasonCode(rawValue: 0x08)

  public var description: String {
    switch self {
    case .noAttachment: "no attachment"
    case .addressOutOfRange: "address out of range"
    case .stage1NotPresent: "stage 1 not present"
    case .stage1ReservedBits: "stage 1 reserved bits"
    case .stage1TableNotMapped: "stage 1 table not mapped"
    case .stage1TableReadRefused: "stage 1 table read refused"
    case .stage2OutputNotMapped: "stage 2 output not mapped"
    case .permission: "permission"
    default: "reason 0x" + String(rawValue, radix: 16)
    }
  }
}

extension VIOMMUFaultReasonCode {
  /// What a fault of this reason at `level`, naming `guestAddress`, means — the one wording both the
  /// platform's typed faults and the guest's records use.
  public func describe(level: Int, guestAddress: PhysicalAddress) -> String {
    let gpa = "gpa 0x" + String(guestAddress.rawValue, radix: 16)
    switch self {
    case .stage1NotPresent: return "stage 1 not present at level \(level)"
    case .stage1ReservedBits: return "stage 1 reserved bits at level \(level)"
    case .stage1TableNotMapped: return "stage 1 table at level \(level) not mapped in stage 2 (\(gpa))"
    case .stage1TableReadRefused: return "stage 1 table read at level \(level) refused (\(gpa))"
    case .stage2OutputNotMapped: return "output \(gpa) not mapped in stage 2"
    default: return description
    }
  }
}
