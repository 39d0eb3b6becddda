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
    let what = fault?.description ?? reason.description
    return "fault \(requester)\(pasid.map { " \($0)" } ?? "") \(access) \(iova): \(what)"
  }

  static let pasidValidFlag: UInt8 = 1 << 0
  static let writeFlag: UInt8 = 1 << 1
  static let domainValidFlag: UInt8 = 1 << 2
}

/// The fault event queue the guest drains: bounded, with a sticky overflow flag that behaves as VT-d's
/// Primary Fault Overflow (Fault Status register, PFO): set when a fault arrives while the queue is
/// full, and while it is set no new fault is recorded — even after the guest has drained records —
/// until the guest clears it. A guest therefore always learns that it lost faults, and the records it
/// does see are the oldest ones, in order.
public struct VIOMMUFaultQueue: Sendable {
  /// Records held at most.
  public let capacity: Int
  /// Set on overflow; cleared only by ``clearOverflow()``.
  public private(set) var overflowed = false
  /// Faults not recorded (queue full or overflow set), since creation: for the platform's logs, not
  /// the guest's interface.
  public private(set) var droppedCount = 0
  /// Records held.
  public private(set) var count = 0

  /// A ring of `capacity` slots; the oldest record is at `head`.
  private var slots: [VIOMMUFaultRecord?]
  private var head = 0

  /// The most records a queue may hold: what the 16-bit capacity field of CAP can show.
  public static let maximumCapacity = 0xFFFF

  /// - Precondition: `capacity` in 1…``maximumCapacity`` (platform configuration, not guest input).
  public init(capacity: Int) {
    precondition((1...Self.maximumCapacity).contains(capacity), "fault queue capacity \(capacity)")
    self.capacity = capacity
    slots = Array(repeating: nil, count: capacity)
  }

  /// Records `record` unless the queue is full or has overflowed.
  public mutating func report(_ record: VIOMMUFaultRecord) {
    guard !overflowed, count < capacity else {
      overflowed = true
      droppedCount += 1
      return
    }
    slots[(head + count) % capacity] = record
    count += 1
  }

  /// The records held, oldest first.
  public var records: [VIOMMUFaultRecord] {
    (0..<count).map { slots[(head + $0) % capacity]! }
  }

  /// The oldest record, or nil.
  public var oldest: VIOMMUFaultRecord? { count == 0 ? nil : slots[head] }

  /// Removes and returns the oldest record. The overflow flag stays as it is.
  @discardableResult
  public mutating func pop() -> VIOMMUFaultRecord? {
    guard count > 0 else { return nil }
    defer {
      slots[head] = nil
      head = (head + 1) % capacity
      count -= 1
    }
    return slots[head]
  }

  /// Removes and returns every record, oldest first. The overflow flag stays as it is.
  public mutating func drain() -> [VIOMMUFaultRecord] {
    defer { while pop() != nil {} }
    return records
  }

  public mutating func clearOverflow() { overflowed = false }
}
