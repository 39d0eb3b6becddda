public import CoveWire
public import IOMMU
public import PCIe

/// The opcode in byte 0 of a vIOMMU command descriptor. A struct, not an enum (STYLE.md rule 3): an
/// unknown opcode read from the guest's queue is a value that can be reported, not a trap. 0 is never
/// an opcode, so a descriptor slot the guest never wrote (zeroed memory) is refused, not executed.
public struct VIOMMUOpcode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
  public var rawValue: UInt8
  public init(rawValue: UInt8) { self.rawValue = rawValue }

  public static let attach = VIOMMUOpcode(rawValue: 0x01)
  public static let detach = VIOMMUOpcode(rawValue: 0x02)
  public static let invalidateRange = VIOMMUOpcode(rawValue: 0x03)
  public static let invalidatePASID = VIOMMUOpcode(rawValue: 0x04)
  public static let invalidateDomain = VIOMMUOpcode(rawValue: 0x05)
  public static let invalidateAll = VIOMMUOpcode(rawValue: 0x06)

  public var description: String {
    switch self {
    case .attach: "ATTACH"
    case .detach: "DETACH"
    case .invalidateRange: "INVALIDATE_RANGE"
    case .invalidatePASID: "INVALIDATE_PASID"
    case .invalidateDomain: "INVALIDATE_DOMAIN"
    case .invalidateAll: "INVALIDATE_ALL"
    default: "opcode 0x" + String(rawValue, radix: 16)
    }
  }
}

/// One command of the vIOMMU's guest-visible interface (Sources/HostPlatform/VIOMMU/README.md). The
/// guest either hands it to ``VIOMMU/execute(_:)`` (one process) or writes its 32-byte descriptor into
/// the command queue in its memory and rings the tail register; both run the same code.
///
/// Descriptor layout, all fields little-endian; a field a command does not use is reserved and must
/// be zero, as are reserved bits (VT-d treats a reserved field set in an invalidation descriptor as an
/// invalidation queue error; so does Cove):
///
/// ```
/// byte  0      opcode
/// byte  1      flags: bit 0 PV (the PASID field is valid); bits 7:1 reserved
/// bytes 2–3    requester ID (attach, detach)
/// bytes 4–7    PASID, bits 19:0 (when PV); bits 31:20 reserved
/// bytes 8–11   domain ID (attach and every invalidation but INVALIDATE_ALL)
/// byte  12     input address bits of the guest's table, 39 or 48 (attach)
/// bytes 13–15  reserved
/// bytes 16–23  root table guest-physical address (attach) / first IOVA (INVALIDATE_RANGE)
/// bytes 24–31  size in bytes (INVALIDATE_RANGE)
/// ```
///
/// Decoding checks the wire format only (known opcode, flags and reserved fields, a 20-bit PASID);
/// whether the values make sense (widths, alignment, PASID 0, a busy device) is ``VIOMMU/execute(_:)``'s
/// to refuse with an errno.
public enum VIOMMUCommand: Hashable, Sendable, CustomStringConvertible {
  /// Points (requester, PASID) — the requester ID alone when `pasid` is nil — at the guest's stage-1
  /// table at guest-physical `root`, `inputAddressBits` wide, cached under `domain` (the VT-d context
  /// or PASID-table entry the guest would write, plus the context-cache invalidation after it).
  case attach(
    requester: RequesterID, pasid: PASID?, domain: DomainID, root: PhysicalAddress, inputAddressBits: Int)
  /// Removes the attachment of (requester, PASID): the device's requests fault from now on.
  case detach(requester: RequesterID, pasid: PASID?)
  /// Invalidates cached translations of `domain` overlapping [iova, iova + size), for one PASID or, when
  /// `pasid` is nil, for every PASID of the domain and requests without one (VT-d page-selective-within-
  /// domain IOTLB invalidation).
  case invalidateRange(domain: DomainID, pasid: PASID?, iova: IOVA, size: UInt64)
  /// Invalidates every cached translation of `pasid` in `domain` (VT-d PASID-selective invalidation).
  case invalidatePASID(domain: DomainID, pasid: PASID)
  /// Invalidates every cached translation of `domain`, all PASIDs (domain-selective invalidation).
  case invalidateDomain(DomainID)
  /// Invalidates every cached translation (global invalidation).
  case invalidateAll

  /// Bytes per descriptor.
  public static let descriptorSize = 32

  public var opcode: VIOMMUOpcode {
    switch self {
    case .attach: .attach
    case .detach: .detach
    case .invalidateRange: .invalidateRange
    case .invalidatePASID: .invalidatePASID
    case .invalidateDomain: .invalidateDomain
    case .invalidateAll: .invalidateAll
    }
  }

  /// Decodes one 32-byte descriptor.
  ///
  /// - Throws: `WireError` with the offset of the offending field: `.truncated` / `.trailingBytes` for
  ///   any length but 32, `.invalidValue` for an unknown opcode, a reserved flag or field that is not
  ///   zero, PASID bits 31:20 set, or INVALIDATE_PASID without PV.
  public init(parsing bytes: [UInt8]) throws(WireError) {
    var reader = ByteReader(bytes)
    let opcode = VIOMMUOpcode(rawValue: try reader.readU8("opcode"))
    let flags = try reader.readU8("flags")
    let requester = try reader.readU16("requester ID")
    let pasidField = try reader.readU32("PASID")
    let domainField = try reader.readU32("domain ID")
    let width = try reader.readU8("input address bits")
    let reservedLow = try reader.readU24("reserved")
    let address = try reader.readU64("address")
    let size = try reader.readU64("size")
    try reader.expectEnd("vIOMMU command descriptor")

    func invalid(_ offset: Int, _ field: String) -> WireError {
      WireError(.invalidValue, at: offset, field: field)
    }
    // Which fields the opcode uses; every other one must be zero.
    let uses: (requester: Bool, pasid: Bool, domain: Bool, width: Bool, address: Bool, size: Bool)
    switch opcode {
    case .attach: uses = (true, true, true, true, true, false)
    case .detach: uses = (true, true, false, false, false, false)
    case .invalidateRange: uses = (false, true, true, false, true, true)
    case .invalidatePASID: uses = (false, true, true, false, false, false)
    case .invalidateDomain: uses = (false, false, true, false, false, false)
    case .invalidateAll: uses = (false, false, false, false, false, false)
    default: throw invalid(0, "opcode (\(opcode) unknown)")
    }
    guard flags & ~Self.pasidValidFlag == 0 else { throw invalid(1, "flags (bits 7:1 reserved)") }
    guard reservedLow == 0 else { throw invalid(13, "reserved") }
    let pasidValid = flags & Self.pasidValidFlag != 0
    let pasid: PASID?
    if pasidValid {
      guard pasidField < PASID.limit else { throw invalid(4, "PASID (bits 31:20 reserved)") }
      pasid = PASID(pasidField)
    } else {
      guard pasidField == 0 else { throw invalid(4, "PASID (reserved without PV)") }
      pasid = nil
    }
    guard uses.pasid || !pasidValid else { throw invalid(1, "flags (PV reserved for \(opcode))") }
    guard uses.requester || requester == 0 else { throw invalid(2, "requester ID (reserved for \(opcode))") }
    guard uses.domain || domainField == 0 else { throw invalid(8, "domain ID (reserved for \(opcode))") }
    guard uses.width || width == 0 else { throw invalid(12, "input address bits (reserved for \(opcode))") }
    guard uses.address || address == 0 else { throw invalid(16, "address (reserved for \(opcode))") }
    guard uses.size || size == 0 else { throw invalid(24, "size (reserved for \(opcode))") }

    let domain = DomainID(rawValue: domainField)
    switch opcode {
    case .attach:
      self = .attach(
        requester: RequesterID(rawValue: requester), pasid: pasid, domain: domain,
        root: PhysicalAddress(address), inputAddressBits: Int(width))
    case .detach:
      self = .detach(requester: RequesterID(rawValue: requester), pasid: pasid)
    case .invalidateRange:
      self = .invalidateRange(domain: domain, pasid: pasid, iova: IOVA(address), size: size)
    case .invalidatePASID:
      guard let pasid else { throw invalid(1, "flags (INVALIDATE_PASID needs PV)") }
      self = .invalidatePASID(domain: domain, pasid: pasid)
    case .invalidateDomain:
      self = .invalidateDomain(domain)
    default:
      self = .invalidateAll
    }
  }

  /// The 32-byte descriptor. A PASID beyond 20 bits or a width beyond 255 cannot be encoded: caller
  /// misuse, a precondition failure.
  public func encode() -> [UInt8] {
    var requester: UInt16 = 0
    var pasid: PASID?
    var domain: UInt32 = 0
    var width = 0
    var address: UInt64 = 0
    var size: UInt64 = 0
    switch self {
    case .attach(let rid, let attachPASID, let attachDomain, let root, let bits):
      (requester, pasid, domain, address, width) = (
        rid.rawValue, attachPASID, attachDomain.rawValue, root.rawValue, bits
      )
    case .detach(let rid, let detachPASID):
      (requester, pasid) = (rid.rawValue, detachPASID)
    case .invalidateRange(let rangeDomain, let rangePASID, let iova, let bytes):
      (domain, pasid, address, size) = (rangeDomain.rawValue, rangePASID, iova.rawValue, bytes)
    case .invalidatePASID(let pasidDomain, let onePASID):
      (domain, pasid) = (pasidDomain.rawValue, onePASID)
    case .invalidateDomain(let oneDomain):
      domain = oneDomain.rawValue
    case .invalidateAll:
      break
    }
    precondition(pasid.map { $0.rawValue < PASID.limit } ?? true, "a vIOMMU command carries a 20-bit PASID")
    precondition((0...255).contains(width), "input address bits \(width) do not fit a descriptor")
    var writer = ByteWriter(capacity: Self.descriptorSize)
    writer.append(opcode.rawValue)
    writer.append(pasid == nil ? 0 : Self.pasidValidFlag)
    writer.append(requester)
    writer.append(pasid?.rawValue ?? 0)
    writer.append(domain)
    writer.append(UInt8(width))
    writer.appendZeros(3)
    writer.append(address)
    writer.append(size)
    return writer.bytes
  }

  public var description: String {
    func pasidText(_ pasid: PASID?) -> String { pasid.map { " \($0)" } ?? "" }
    switch self {
    case .attach(let requester, let pasid, let domain, let root, let bits):
      return
        "ATTACH \(requester)\(pasidText(pasid)) \(domain) root gpa 0x\(String(root.rawValue, radix: 16)) \(bits)-bit"
    case .detach(let requester, let pasid):
      return "DETACH \(requester)\(pasidText(pasid))"
    case .invalidateRange(let domain, let pasid, let iova, let size):
      return "INVALIDATE_RANGE \(domain)\(pasidText(pasid)) \(iova) + 0x\(String(size, radix: 16))"
    case .invalidatePASID(let domain, let pasid):
      return "INVALIDATE_PASID \(domain) \(pasid)"
    case .invalidateDomain(let domain):
      return "INVALIDATE_DOMAIN \(domain)"
    case .invalidateAll:
      return "INVALIDATE_ALL"
    }
  }

  static let pasidValidFlag: UInt8 = 1 << 0
}
