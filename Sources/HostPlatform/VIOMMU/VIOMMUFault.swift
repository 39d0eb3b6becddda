public import GuestABI
public import IOMMU
public import PCIe

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
    reasonCode.describe(level: level ?? 0, guestAddress: guestAddress ?? PhysicalAddress(0))
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

extension VIOMMUFaultRecord {
  /// The record of `fault` for a request.
  public init(
    _ fault: VIOMMUFault, requester: RequesterID, pasid: PASID?, access: IOAccess, domain: DomainID?,
    iova: IOVA
  ) {
    self.init(
      reason: fault.reasonCode, level: UInt8(truncatingIfNeeded: fault.level ?? 0), requester: requester,
      pasid: pasid, access: access, domain: domain, iova: iova,
      guestAddress: fault.guestAddress ?? PhysicalAddress(0))
  }

  /// The typed fault this record describes, or nil for a reason code this version does not know (or
  /// a level a known reason cannot have).
  public var fault: VIOMMUFault? {
    let level = Int(self.level)
    let leveled = (1...4).contains(level)
    switch reason {
    case .noAttachment: return .noAttachment
    case .addressOutOfRange: return .addressOutOfRange
    case .stage1NotPresent: return leveled ? .stage1NotPresent(level: level) : nil
    case .stage1ReservedBits: return leveled ? .stage1ReservedBits(level: level) : nil
    case .stage1TableNotMapped:
      return leveled ? .stage1TableNotMapped(level: level, entry: guestAddress) : nil
    case .stage1TableReadRefused:
      return leveled ? .stage1TableReadRefused(level: level, entry: guestAddress) : nil
    case .stage2OutputNotMapped: return .stage2OutputNotMapped(output: guestAddress)
    case .permission: return .permission
    default: return nil
    }
  }
}
