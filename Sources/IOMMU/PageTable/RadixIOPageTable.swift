/// A real multi-level radix I/O page table in Cove's entry format (`RadixPageTableEntry`): the
/// VT-d second-level / x86-64 layout with 9 IOVA bits per level and 4 KiB, 2 MiB and 1 GiB leaves.
/// A 48-bit table has 4 levels (root at level 4), a 39-bit table 3 (VT-d's 3-level SAGAW; root at
/// level 3, which may hold 1 GiB leaves).
///
/// The table lives entirely in its `IOTableMemory`, entry by entry, so what the IOMMU hardware model
/// and the vIOMMU walk is exactly what `map` wrote; the object itself keeps only counters. Semantics
/// are the `IOPageTableProtocol` contract (Linux iommu_map / iommu_unmap / iommu_iova_to_phys,
/// drivers/iommu/iommu.c, over an io-pgtable format, drivers/iommu/io-pgtable-arm.c and the Intel
/// driver's second-level tables).
///
/// Invariant: apart from the root, no table page is empty. `unmap` frees a table the moment its last
/// entry goes, so memory returns to the pool, and a failed map leaves no table behind.
public final class RadixIOPageTable: IOPageTableProtocol {
  /// The memory the tables live in.
  public let memory: any IOTableMemory
  /// The root table (the second-level page-table pointer a context entry would hold).
  public let root: PhysicalAddress
  /// IOVA bits translated: 48 (4 levels) or 39 (3 levels).
  public let inputAddressBits: Int
  /// Levels of the table: 4 for 48-bit input, 3 for 39-bit.
  public let levels: Int
  /// Bytes currently mapped.
  /// (Counters are not checked for exclusivity dynamically: the table is single-threaded, STYLE.md
  /// rule 8, and a check per `+=` would show on the map/unmap path.)
  @exclusivity(unchecked) public internal(set) var mappedBytes: UInt64 = 0
  /// Table pages this table holds, the root included.
  @exclusivity(unchecked) public internal(set) var tablePages: Int = 1
  /// Bumped whenever a table page is added or freed (the only times a non-leaf entry changes): a
  /// cache of where a level-1 table is (a burst translator's) is valid only while it is unchanged.
  @exclusivity(unchecked) public internal(set) var structureGeneration: UInt64 = 0

  /// The same memory when it is a `TablePagePool`: a direct, devirtualised path for the hot walks.
  /// Unmanaged because `memory` already holds the same object strongly for the table's lifetime: a
  /// strong optional here made every map, unmap and walk retain and release the pool.
  let pool: Unmanaged<TablePagePool>?
  /// 2^inputAddressBits: the first IOVA beyond the table.
  let inputLimit: UInt64

  /// A table with an empty root allocated from `memory`.
  ///
  /// - Throws: EINVAL for an input width other than 39 or 48 bits; ENOMEM when no root page can be
  ///   allocated.
  public init(memory: any IOTableMemory, inputAddressBits: Int = 48) throws(IOMMUError) {
    let levels = try Self.levels(forInputAddressBits: inputAddressBits)
    guard let root = memory.allocateTablePage() else {
      throw IOMMUError(.ENOMEM, "no table page for the root of an I/O page table")
    }
    Self.checkTablePage(root)
    self.memory = memory
    self.pool = (memory as? TablePagePool).map { Unmanaged.passUnretained($0) }
    self.root = root
    self.inputAddressBits = inputAddressBits
    self.levels = levels
    self.inputLimit = 1 << UInt64(inputAddressBits)
  }

  deinit {
    freeSubtree(root.rawValue, level: levels)
  }

  /// The levels of a table with `bits` of input address (VT-d SAGAW: 39-bit 3-level, 48-bit 4-level).
  static func levels(forInputAddressBits bits: Int) throws(IOMMUError) -> Int {
    switch bits {
    case 39: return 3
    case 48: return 4
    default: throw IOMMUError(.EINVAL, "unsupported I/O page-table input width \(bits) bits (39 or 48)")
    }
  }

  /// What the table memory hands out must be a page an entry can point at; anything else is a broken
  /// `IOTableMemory`, not caller input.
  static func checkTablePage(_ page: PhysicalAddress) {
    precondition(
      page.rawValue % TablePagePool.pageBytes == 0
        && page.rawValue < RadixPageTableEntry.outputAddressLimit,
      "table memory returned \(page), not a 4 KiB-aligned 52-bit page address")
  }

  // MARK: - Entry access

  /// log2 of the bytes one entry at `level` covers: 12 + 9 × (level − 1).
  @inline(__always)
  static func shift(ofLevel level: Int) -> UInt64 { UInt64(truncatingIfNeeded: 3 &+ 9 &* level) }

  /// The address of the entry for `iova` in the table at `table`, which is at `level`.
  @inline(__always)
  static func entryAddress(table: UInt64, level: Int, iova: UInt64) -> UInt64 {
    table | (((iova &>> shift(ofLevel: level)) & 511) &<< 3)
  }

  @inline(__always)
  func load(_ address: UInt64) -> UInt64 {
    if let pool { return pool._withUnsafeGuaranteedRef { $0.loadOwnEntry(address) } }
    return memory.loadEntry(PhysicalAddress(address))
  }

  @inline(__always)
  func store(_ value: UInt64, at address: UInt64) {
    if let pool { return pool._withUnsafeGuaranteedRef { $0.storeOwnEntry(value, at: address) } }
    memory.storeEntry(value, at: PhysicalAddress(address))
  }

  /// Whether the table page at `table` has no present entry.
  func isEmptyTable(_ table: UInt64) -> Bool {
    if let pool { return pool._withUnsafeGuaranteedRef { !$0.hasPresentEntry(inPage: table) } }
    var offset: UInt64 = 0
    while offset < TablePagePool.pageBytes {
      if load(table | offset) & (RadixPageTableEntry.readBit | RadixPageTableEntry.writeBit) != 0 {
        return false
      }
      offset += 8
    }
    return true
  }

  /// Frees the table at `table` (at `level`) and every table below it.
  private func freeSubtree(_ table: UInt64, level: Int) {
    if level > 1 {
      for index in 0..<TablePagePool.entriesPerPage {
        let entry = RadixPageTableEntry(rawValue: load(table | UInt64(index) << 3))
        if entry.isPresent && !entry.isLeaf(atLevel: level) {
          freeSubtree(entry.address.rawValue, level: level - 1)
        }
      }
    }
    memory.freeTablePage(PhysicalAddress(table))
  }

  // MARK: - Listing

  /// Every leaf, in IOVA order.
  public func mappings() -> [IOLeafMapping] {
    var result: [IOLeafMapping] = []
    collectLeaves(root.rawValue, level: levels, tableIOVA: 0, into: &result)
    return result
  }

  private func collectLeaves(
    _ table: UInt64, level: Int, tableIOVA: UInt64, into result: inout [IOLeafMapping]
  ) {
    let shift = Self.shift(ofLevel: level)
    for index in 0..<TablePagePool.entriesPerPage {
      let entry = RadixPageTableEntry(rawValue: load(table | UInt64(index) << 3))
      guard entry.isPresent else { continue }
      let iova = tableIOVA | (UInt64(index) << shift)
      if entry.isLeaf(atLevel: level) {
        result.append(
          IOLeafMapping(
            iova: IOVA(iova), physical: entry.address, pageSize: .leaf(atLevel: level),
            protection: entry.protection))
      } else {
        collectLeaves(entry.address.rawValue, level: level - 1, tableIOVA: iova, into: &result)
      }
    }
  }
}
