public import IOMMU

/// Why a translation through the vIOMMU failed: exactly where the nested walk stopped. Every fault is
/// also recorded for the guest in the fault event queue (``VIOMMUFaultRecord``).
///
/// Guest-physical addresses name what the guest can act on (its table entry, its output page); host
/// addresses never appear, so a fault record tells the guest nothing about the host's memory layout.
public enum VIOMMUFault: Error, Hashable, Sendable, CustomStringConvertible {
  /// The request's (requester ID, PASID) has no attachment (VT-d: context or PASID entry not present).
  case noAttachment
  /// The IOVA lies beyond the attached table's input width.
  case addressOutOfRange
  /// The guest's stage-1 entry at `level` is not present (R = W = 0).
  case stage1NotPresent(level: Int)
  /// The guest's stage-1 entry at `level` has a reserved bit set.
  case stage1ReservedBits(level: Int)
  /// The stage-1 entry at `level` lives at guest-physical `entry`, which has no stage-2 mapping: the
  /// table page is not the guest's memory as far as the platform knows.
  case stage1TableNotMapped(level: Int, entry: PhysicalAddress)
  /// The stage-1 entry at `level` at guest-physical `entry` is mapped, but the platform refused to read
  /// it (page not owned by the guest, integrity check failed, …).
  case stage1TableReadRefused(level: Int, entry: PhysicalAddress)
  /// The guest's tables translate the IOVA to guest-physical `output`, which has no stage-2 mapping.
  case stage2OutputNotMapped(output: PhysicalAddress)
  /// Translated, but the guest's entries do not grant the access (write to read-only, read of
  /// write-only).
  case permission

  public var description: String {
    switch self {
    case .noAttachment: "no attachment"
    case .addressOutOfRange: "address out of range"
    case .stage1NotPresent(let level): "stage 1 not present at level \(level)"
    case .stage1ReservedBits(let level): "stage 1 reserved bits at level \(level)"
    case .stage1TableNotMapped(let level, let entry):
      "stage 1 table at level \(level) not mapped in stage 2 (gpa 0x\(String(entry.rawValue, radix: 16)))"
    case .stage1TableReadRefused(let level, let entry):
      "stage 1 table read at level \(level) refused (gpa 0x\(String(entry.rawValue, radix: 16)))"
    case .stage2OutputNotMapped(let output):
      "output gpa 0x\(String(output.rawValue, radix: 16)) not mapped in stage 2"
    case .permission: "permission"
    }
  }

  /// The code this fault has in a fault record.
  public var reasonCode: VIOMMUFaultReasonCode {
    switch self {
    case .noAttachment: .noAttachment
    case .addressOutOfRange: .addressOutOfRange
    case .stage1NotPresent: .stage1NotPresent
    case .stage1ReservedBits: .stage1ReservedBits
    case .stage1TableNotMapped: .stage1TableNotMapped
    case .stage1TableReadRefused: .stage1TableReadRefused
    case .stage2OutputNotMapped: .stage2OutputNotMapped
    case .permission: .permission
    }
  }

  /// The stage-1 level the fault names, or nil.
  public var level: Int? {
    switch self {
    case .stage1NotPresent(let level), .stage1ReservedBits(let level), .stage1TableNotMapped(let level, _),
      .stage1TableReadRefused(let level, _):
      level
    default: nil
    }
  }

  /// The guest-physical address the fault names, or nil.
  public var guestAddress: PhysicalAddress? {
    switch self {
    case .stage1TableNotMapped(_, let entry), .stage1TableReadRefused(_, let entry): entry
    case .stage2OutputNotMapped(let output): output
    default: nil
    }
  }
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
