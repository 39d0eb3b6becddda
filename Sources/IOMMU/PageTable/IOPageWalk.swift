/// A page walk with its trace: every entry read, top level first, and how the walk ended. The
/// vIOMMU reports faults from it (VT-d fault records name the failing level and reason) and tests read
/// the trace to check the format level by level.
public struct IOPageWalk: Hashable, Sendable {
  /// One entry read by the walk.
  public struct Step: Hashable, Sendable {
    /// The table level, 4 (root of a 48-bit table) down to 1.
    public var level: Int
    /// Where the entry lives in table memory.
    public var entryAddress: PhysicalAddress
    /// The raw entry.
    public var entry: RadixPageTableEntry

    public init(level: Int, entryAddress: PhysicalAddress, entry: RadixPageTableEntry) {
      self.level = level
      self.entryAddress = entryAddress
      self.entry = entry
    }
  }

  /// Why a walk produced no translation.
  public enum Fault: Hashable, Sendable, CustomStringConvertible {
    /// The IOVA lies beyond the table's input address width (nothing was read).
    case addressOutOfRange
    /// The entry at `level` has neither read nor write: a hole.
    case notPresent(level: Int)
    /// The entry at `level` has a reserved bit set (only possible in tables someone else wrote).
    case reservedBitsSet(level: Int)
    /// The entry at `level`, at `address` in the table's address space, could not be read: the
    /// reader refused it. Only walks through a checked reader end this way — a vIOMMU walking a
    /// guest's tables, where the table page may be unmapped in stage 2 or fail the platform's access
    /// checks (VT-d reports a fault on a failed paging-structure access rather than use the entry).
    case tableReadFailed(level: Int, address: PhysicalAddress)

    public var description: String {
      switch self {
      case .addressOutOfRange: "address out of range"
      case .notPresent(let level): "not present at level \(level)"
      case .reservedBitsSet(let level): "reserved bits set at level \(level)"
      case .tableReadFailed(let level, let address): "table read failed at level \(level) (\(address))"
      }
    }
  }

  /// How a walk ended.
  public enum Outcome: Hashable, Sendable {
    case translated(IOTranslation)
    case faulted(Fault)
  }

  public var iova: IOVA
  public var steps: [Step]
  public var outcome: Outcome

  public init(iova: IOVA, steps: [Step], outcome: Outcome) {
    self.iova = iova
    self.steps = steps
    self.outcome = outcome
  }

  /// The translation, or nil when the walk faulted.
  public var translation: IOTranslation? {
    if case .translated(let translation) = outcome { return translation }
    return nil
  }

  /// The fault, or nil when the walk translated.
  public var fault: Fault? {
    if case .faulted(let fault) = outcome { return fault }
    return nil
  }
}

/// One leaf of a page table: `pageSize` bytes at `iova` mapped to `physical`. Both page-table
/// implementations list their leaves this way so their whole state can be compared.
public struct IOLeafMapping: Hashable, Sendable, CustomStringConvertible {
  public var iova: IOVA
  public var physical: PhysicalAddress
  public var pageSize: PageSize
  public var protection: IOProtection

  public init(iova: IOVA, physical: PhysicalAddress, pageSize: PageSize, protection: IOProtection) {
    self.iova = iova
    self.physical = physical
    self.pageSize = pageSize
    self.protection = protection
  }

  public var description: String {
    "\(iova) -> \(physical) \(pageSize.bytes >> 10) KiB \(protection)"
  }
}
