/// Typed identifiers and addresses of the IOMMU core. Bare integers are never passed around: an IOVA
/// cannot be handed where a physical address is expected (STYLE.md rule 2).

/// An I/O virtual address: what a device puts on the bus and the IOMMU translates.
public struct IOVA: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
  public var rawValue: UInt64
  public init(rawValue: UInt64) { self.rawValue = rawValue }
  public init(_ value: UInt64) { self.rawValue = value }
  public static func < (lhs: IOVA, rhs: IOVA) -> Bool { lhs.rawValue < rhs.rawValue }
  public func advanced(by bytes: UInt64) -> IOVA { IOVA(rawValue &+ bytes) }
  public var description: String { "iova 0x" + String(rawValue, radix: 16) }
}

/// The output address of a translation: host-physical on the host, guest-physical for a guest's
/// stage-1 tables. Page-table pages live at such addresses too.
public struct PhysicalAddress: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
  public var rawValue: UInt64
  public init(rawValue: UInt64) { self.rawValue = rawValue }
  public init(_ value: UInt64) { self.rawValue = value }
  public static func < (lhs: PhysicalAddress, rhs: PhysicalAddress) -> Bool { lhs.rawValue < rhs.rawValue }
  public func advanced(by bytes: UInt64) -> PhysicalAddress { PhysicalAddress(rawValue &+ bytes) }
  public var description: String { "pa 0x" + String(rawValue, radix: 16) }
}

/// A PCIe Process Address Space ID (PCIe 6.x §6.20): 20 bits. 0 is IOMMU_NO_PASID in Linux: the
/// requests without a PASID prefix, never a valid PASID to attach (SEMANTICS.md §3).
public struct PASID: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
  public var rawValue: UInt32
  public init(rawValue: UInt32) { self.rawValue = rawValue }
  public init(_ value: UInt32) { self.rawValue = value }
  // swift-format-ignore: DontRepeatTypeInStaticProperties
  public static let noPASID = PASID(rawValue: 0)
  /// 2^20: PASIDs are 20 bits wide (PCIe 6.x §6.20).
  public static let limit: UInt32 = 1 << 20
  public static func < (lhs: PASID, rhs: PASID) -> Bool { lhs.rawValue < rhs.rawValue }
  public var description: String { "pasid \(rawValue)" }
}

/// Identifies a domain (an I/O address space) inside one IOMMU core; also the IOTLB tag.
public struct DomainID: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
  public var rawValue: UInt32
  public init(rawValue: UInt32) { self.rawValue = rawValue }
  public var description: String { "domain \(rawValue)" }
}

/// Identifies an IOMMU group (the smallest unit of isolation, SEMANTICS.md §1).
public struct GroupID: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
  public var rawValue: UInt32
  public init(rawValue: UInt32) { self.rawValue = rawValue }
  public var description: String { "group \(rawValue)" }
}

/// The identity of a user owner of a group's DMA (in Linux, e.g. the open file of a VFIO device).
public struct OwnerCookie: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
  public var rawValue: UInt64
  public init(rawValue: UInt64) { self.rawValue = rawValue }
  public var description: String { "owner \(rawValue)" }
}

/// Identifies a process address space (an `mm` in Linux) that SVA shares with devices.
public struct AddressSpaceID: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
  public var rawValue: UInt32
  public init(rawValue: UInt32) { self.rawValue = rawValue }
  public var description: String { "mm \(rawValue)" }
}

/// Access rights and memory attribute of a mapping. Read/write as IOMMU_READ/IOMMU_WRITE; `shared`
/// marks an entry whose target is shared (decrypted) memory of a confidential guest — without it the
/// target is private (SEMANTICS.md §5: guest memory is private by default).
public struct IOProtection: OptionSet, Hashable, Sendable, CustomStringConvertible {
  public var rawValue: UInt8
  public init(rawValue: UInt8) { self.rawValue = rawValue }
  public static let read = IOProtection(rawValue: 1 << 0)
  public static let write = IOProtection(rawValue: 1 << 1)
  public static let shared = IOProtection(rawValue: 1 << 2)
  public static let readWrite: IOProtection = [.read, .write]
  public var description: String {
    (contains(.read) ? "r" : "-") + (contains(.write) ? "w" : "-")
      + (contains(.shared) ? " shared" : " private")
  }
}

/// The leaf sizes of the 4-level I/O page table format.
public enum PageSize: UInt64, CaseIterable, Sendable, Comparable {
  case size4K = 0x1000
  case size2M = 0x20_0000
  case size1G = 0x4000_0000

  public var bytes: UInt64 { rawValue }
  public static func < (lhs: PageSize, rhs: PageSize) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// The result of translating one IOVA: the output address (page base plus the offset), the rights,
/// and the size of the leaf that mapped it.
public struct IOTranslation: Hashable, Sendable {
  public var physical: PhysicalAddress
  public var protection: IOProtection
  public var pageSize: PageSize
  public init(physical: PhysicalAddress, protection: IOProtection, pageSize: PageSize) {
    self.physical = physical
    self.protection = protection
    self.pageSize = pageSize
  }
}

/// The kind of access a device makes (for permission checks and fault records).
public enum IOAccess: Sendable, Hashable, CustomStringConvertible {
  case read
  case write
  public var description: String { self == .read ? "read" : "write" }
  public var requiredProtection: IOProtection { self == .read ? .read : .write }
}
