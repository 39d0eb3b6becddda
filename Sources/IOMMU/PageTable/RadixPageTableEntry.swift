/// One 64-bit entry of Cove's I/O page-table format, the format `RadixIOPageTable` writes and the
/// vIOMMU walks in guest memory. It follows Intel VT-d second-level paging (VT-d architecture
/// specification, "Second-Level Translation" and "Second-Level Paging Entries"), which is itself the
/// x86-64 4-level layout: 512 entries of 8 bytes per 4 KiB table, 9 IOVA bits per level.
///
/// ```
///  63      52 51                                  12 11  10  8  7   6   2  1   0
/// +----------+--------------------------------------+---+------+----+-----+---+---+
/// | reserved |  address (next table, or page frame)  | S | rsvd | PS | rsvd| W | R |
/// +----------+--------------------------------------+---+------+----+-----+---+---+
/// ```
///
/// - R (bit 0), W (bit 1): read and write permission. As in VT-d second-level entries, an entry with
///   both clear is **not present**; there is no separate present bit. Non-leaf entries written by
///   `RadixIOPageTable` carry R|W so the leaf alone decides; a walk ANDs R and W over all levels, as
///   VT-d does, so a guest may restrict a whole subtree at a non-leaf entry.
/// - PS (bit 7): at level 2 the entry is a 2 MiB leaf, at level 3 a 1 GiB leaf. Reserved (must be 0)
///   at level 1 (every present level-1 entry is a 4 KiB leaf) and at level 4 (no 512 GiB pages).
/// - S (bit 11, leaves only): Cove's private/shared attribute (SEMANTICS.md §5). Set: the target is
///   shared (decrypted) memory of a confidential guest; clear: private. VT-d puts SNP here; Cove has no
///   snoop control and reuses the bit. Reserved in non-leaf entries.
/// - Address (bits 51:12): the next table's 4 KiB-aligned address, or the page frame. A 2 MiB leaf
///   must have bits 20:12 clear, a 1 GiB leaf bits 29:12 (reserved, like VT-d's large-page entries).
/// - Every other bit is reserved. A walk that meets a reserved bit set faults
///   (`IOPageWalk.Fault.reservedBitsSet`), as VT-d reports a non-zero reserved field.
///
/// A map with neither read nor write is refused (EINVAL): it could not be told apart from a hole. Linux's
/// io-pgtable-arm silently maps nothing in that case; Cove makes the caller's mistake visible.
public struct RadixPageTableEntry: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
  public var rawValue: UInt64
  public init(rawValue: UInt64) { self.rawValue = rawValue }

  public static let readBit: UInt64 = 1 << 0
  public static let writeBit: UInt64 = 1 << 1
  public static let pageSizeBit: UInt64 = 1 << 7
  public static let sharedBit: UInt64 = 1 << 11
  /// Bits 51:12.
  public static let addressMask: UInt64 = 0x000F_FFFF_FFFF_F000
  /// Output addresses are 52 bits wide: the most bits 51:12 can hold.
  public static let outputAddressLimit: UInt64 = 1 << 52
  /// Bits reserved in every entry: 63:52, 10:8 and 6:2.
  public static let alwaysReservedMask: UInt64 = 0xFFF0_0000_0000_077C

  /// A non-leaf entry pointing at the table page `table`, open for read and write.
  public static func table(_ table: PhysicalAddress) -> RadixPageTableEntry {
    RadixPageTableEntry(rawValue: (table.rawValue & addressMask) | readBit | writeBit)
  }

  /// A leaf entry for a page of `pageSize` at `frame` with `protection` (read, write, shared).
  public static func leaf(_ frame: PhysicalAddress, pageSize: PageSize, protection: IOProtection)
    -> RadixPageTableEntry
  {
    var value = (frame.rawValue & addressMask) | protectionBits(protection)
    if pageSize != .size4K { value |= pageSizeBit }
    return RadixPageTableEntry(rawValue: value)
  }

  /// Present: read or write permitted (VT-d second-level "not present" is R = W = 0).
  public var isPresent: Bool { rawValue & (Self.readBit | Self.writeBit) != 0 }
  /// The address field: the next table or the page frame.
  public var address: PhysicalAddress { PhysicalAddress(rawValue & Self.addressMask) }
  /// The rights and attribute this entry grants.
  public var protection: IOProtection {
    var result: IOProtection = []
    if rawValue & Self.readBit != 0 { result.insert(.read) }
    if rawValue & Self.writeBit != 0 { result.insert(.write) }
    if rawValue & Self.sharedBit != 0 { result.insert(.shared) }
    return result
  }

  /// Whether a present entry at `level` (1…4) is a leaf.
  public func isLeaf(atLevel level: Int) -> Bool {
    level == 1 || (level <= 3 && rawValue & Self.pageSizeBit != 0)
  }

  /// Whether a present entry at `level` (1…4) has a reserved bit set.
  public func hasReservedBits(atLevel level: Int) -> Bool {
    rawValue & Self.reservedMask(level: level, leaf: isLeaf(atLevel: level)) != 0
  }

  public var description: String {
    "pte 0x" + String(rawValue, radix: 16)
  }

  @inline(__always)
  static func protectionBits(_ protection: IOProtection) -> UInt64 {
    (protection.contains(.read) ? readBit : 0) | (protection.contains(.write) ? writeBit : 0)
      | (protection.contains(.shared) ? sharedBit : 0)
  }

  /// The reserved bits of an entry at `level` (1…4) that is (`leaf`) or is not a leaf.
  @inline(__always)
  static func reservedMask(level: Int, leaf: Bool) -> UInt64 {
    if !leaf {
      // Level 4 cannot hold a leaf, so PS is reserved there; S means nothing above a leaf.
      return alwaysReservedMask | sharedBit | (level == 4 ? pageSizeBit : 0)
    }
    switch level {
    case 1: return alwaysReservedMask | pageSizeBit
    case 2: return alwaysReservedMask | 0x1F_F000  // bits 20:12 of a 2 MiB frame
    default: return alwaysReservedMask | 0x3FFF_F000  // bits 29:12 of a 1 GiB frame
    }
  }
}

extension PageSize {
  /// The table level whose leaves have this size: 1 for 4 KiB, 2 for 2 MiB, 3 for 1 GiB.
  var leafLevel: Int {
    switch self {
    case .size4K: 1
    case .size2M: 2
    case .size1G: 3
    }
  }

  /// The leaf size of `level` (1…3).
  static func leaf(atLevel level: Int) -> PageSize {
    switch level {
    case 1: .size4K
    case 2: .size2M
    default: .size1G
    }
  }
}
