/// map and unmap (the `IOPageTableProtocol` contract; Linux iommu_map / iommu_unmap in
/// drivers/iommu/iommu.c over an io-pgtable format's map_pages / unmap_pages).
extension RadixIOPageTable {
  /// Maps `size` bytes at `iova` to `physical`.
  ///
  /// Checks, in this order: `protection` must grant read or write and hold no unknown bit (EINVAL);
  /// `iova`, `physical` and `size` 4 KiB aligned (EINVAL, as iommu_map's IS_ALIGNED test against the
  /// smallest page size); a zero size maps nothing (iommu_map's loop does not run); the IOVA range
  /// inside the input width and the physical range inside 52 bits (ERANGE, as io-pgtable's
  /// input/output-size checks); nothing in the range mapped (EEXIST) — checked over the whole range
  /// before any entry is written.
  ///
  /// Each leaf is the largest page size that the remaining size and the alignment of both the IOVA and
  /// the physical address allow (iommu_pgsize). When table memory runs out the leaves written so far and
  /// the tables allocated for them are removed again (iommu_map unmaps a partial map) and ENOMEM is
  /// thrown: the table is exactly as before.
  public func map(_ iova: IOVA, to physical: PhysicalAddress, size: UInt64, protection: IOProtection)
    throws(IOMMUError)
  {
    try Self.validateMapProtection(protection)
    try Self.validateAlignment(iova.rawValue | physical.rawValue | size, what: "map \(iova) -> \(physical)")
    guard size > 0 else { return }
    try validateIOVARange(iova.rawValue, size: size)
    guard physical.rawValue <= RadixPageTableEntry.outputAddressLimit - size else {
      throw IOMMUError(.ERANGE, "\(physical) + 0x\(String(size, radix: 16)) is beyond 52 physical bits")
    }
    let start = iova.rawValue
    let end = start + size
    if size == PageSize.size4K.bytes {
      // One 4 KiB page (every dma_map_page of a page): the EEXIST check and the install are one walk.
      let leaf = physical.rawValue | RadixPageTableEntry.protectionBits(protection)
      if let pool {
        try mapOnePage(OwnPoolReader(pool: pool), start, leaf: leaf)
      } else {
        try mapOnePage(MemoryReader(memory: memory), start, leaf: leaf)
      }
      mappedBytes += size
      return
    }
    if let (leafIOVA, _) = firstLeaf(in: root.rawValue, level: levels, tableIOVA: 0, start: start, end: end) {
      throw IOMMUError(.EEXIST, "\(IOVA(leafIOVA)) is already mapped inside the range mapped at \(iova)")
    }

    let attributes = RadixPageTableEntry.protectionBits(protection)
    var offset: UInt64 = 0
    while offset < size {
      let va = start + offset
      let pa = physical.rawValue + offset
      let pageSize = Self.largestPageSize(iova: va, physical: pa, remaining: size - offset)
      guard installLeaf(iova: va, physical: pa, pageSize: pageSize, attributes: attributes) else {
        var removed: UInt64 = 0
        var noSink = NoUnmappedLeafSink()
        _ = unmapRange(
          root.rawValue, level: levels, tableIOVA: 0, start: start, end: end, pruneUntouched: true,
          unmapped: &removed, sink: &noSink)
        precondition(removed == offset, "rollback removed \(removed) bytes of the \(offset) mapped")
        throw IOMMUError(.ENOMEM, "table memory exhausted mapping \(iova) + 0x\(String(size, radix: 16))")
      }
      offset += pageSize.bytes
    }
    mappedBytes += size
  }

  /// Unmaps from `iova` upward within `size` bytes, stopping at the first hole, and returns the bytes
  /// unmapped (0 when `iova` is a hole).
  ///
  /// EINVAL when `iova` or `size` is not 4 KiB aligned, or when a leaf straddles either end of the range:
  /// unmapping would have to split it, and nothing is unmapped. ERANGE when the range leaves the input
  /// width (nothing can be mapped there). A zero size unmaps nothing.
  ///
  /// A table page is freed only when the range covers its whole span (then it is empty), as Linux's
  /// VT-d `domain_unmap` frees only page-table pages the unmapped range covers entirely; a table left
  /// empty by a smaller unmap stays linked for the next map, so a map/unmap pair of one page does not
  /// allocate and free a table every time.
  public func unmap(_ iova: IOVA, size: UInt64) throws(IOMMUError) -> UInt64 {
    var sink = NoUnmappedLeafSink()
    return try unmap(iova, size: size, reportingLeavesTo: &sink)
  }

  /// `unmap`, also reporting every leaf it clears, in IOVA order, to `sink` (an `IOTLBGather` for the
  /// DMA layer, which so learns the leaf sizes without a walk per page before the unmap).
  func unmap<Sink: UnmappedLeafSink>(_ iova: IOVA, size: UInt64, reportingLeavesTo sink: inout Sink)
    throws(IOMMUError) -> UInt64
  {
    try Self.validateAlignment(iova.rawValue | size, what: "unmap \(iova)")
    guard size > 0 else { return 0 }
    try validateIOVARange(iova.rawValue, size: size)
    let start = iova.rawValue
    if size == PageSize.size4K.bytes {
      // One 4 KiB page (every dma_unmap_page of a page): one walk, unless a large leaf is over it.
      let one =
        if let pool {
          unmapOnePage(OwnPoolReader(pool: pool), start)
        } else {
          unmapOnePage(MemoryReader(memory: memory), start)
        }
      if let unmapped = one {
        if unmapped != 0 { sink.cleared(IOVA(start), pageSize: .size4K) }
        return unmapped
      }
    }
    let end = start + size
    if let first = translate(IOVA(start)), start & (first.pageSize.bytes - 1) != 0 {
      throw IOMMUError(
        .EINVAL, "unmap at \(iova) would split the \(first.pageSize.bytes >> 10) KiB leaf under it")
    }
    if let last = translate(IOVA(end - 1)), end & (last.pageSize.bytes - 1) != 0 {
      throw IOMMUError(
        .EINVAL, "unmap ending at \(IOVA(end)) would split the \(last.pageSize.bytes >> 10) KiB leaf under it"
      )
    }
    var unmapped: UInt64 = 0
    _ = unmapRange(
      root.rawValue, level: levels, tableIOVA: 0, start: start, end: end, pruneUntouched: false,
      unmapped: &unmapped, sink: &sink)
    mappedBytes -= unmapped
    return unmapped
  }

  // MARK: - Validation

  static func validateMapProtection(_ protection: IOProtection) throws(IOMMUError) {
    guard protection.isSubset(of: [.read, .write, .shared]) else {
      throw IOMMUError(.EINVAL, "unknown protection bits 0x\(String(protection.rawValue, radix: 16))")
    }
    guard !protection.isDisjoint(with: .readWrite) else {
      throw IOMMUError(.EINVAL, "a mapping needs read or write: R = W = 0 is a not-present entry")
    }
  }

  /// `what` is built only for the error: formatting it on every call would cost more than the map.
  static func validateAlignment(_ bits: UInt64, what: @autoclosure () -> String) throws(IOMMUError) {
    guard bits & (PageSize.size4K.bytes - 1) == 0 else {
      throw IOMMUError(.EINVAL, "\(what()): address or size not 4 KiB aligned")
    }
  }

  func validateIOVARange(_ iova: UInt64, size: UInt64) throws(IOMMUError) {
    guard iova < inputLimit, size <= inputLimit - iova else {
      throw IOMMUError(
        .ERANGE,
        "\(IOVA(iova)) + 0x\(String(size, radix: 16)) is beyond the \(inputAddressBits)-bit input range")
    }
  }

  // MARK: - Map internals

  /// iommu_pgsize's choice: the largest leaf no bigger than what remains, aligned at both addresses.
  static func largestPageSize(iova: UInt64, physical: UInt64, remaining: UInt64) -> PageSize {
    let alignment = iova | physical
    if remaining >= PageSize.size1G.bytes && alignment & (PageSize.size1G.bytes - 1) == 0 { return .size1G }
    if remaining >= PageSize.size2M.bytes && alignment & (PageSize.size2M.bytes - 1) == 0 { return .size2M }
    return .size4K
  }

  /// The first leaf (its IOVA and level) that intersects `[start, end)` in the table at `table`, which
  /// is at `level` and translates from `tableIOVA`. The range lies inside the table's coverage.
  func firstLeaf(in table: UInt64, level: Int, tableIOVA: UInt64, start: UInt64, end: UInt64) -> (
    UInt64, Int
  )? {
    let shift = Self.shift(ofLevel: level)
    let span: UInt64 = 1 << shift
    var index = (start >> shift) & 511
    let lastIndex = ((end - 1) >> shift) & 511
    while index <= lastIndex {
      let entry = RadixPageTableEntry(rawValue: load(table | (index << 3)))
      if entry.isPresent {
        let entryIOVA = tableIOVA | (index << shift)
        if entry.isLeaf(atLevel: level) { return (entryIOVA, level) }
        if let found = firstLeaf(
          in: entry.address.rawValue, level: level - 1, tableIOVA: entryIOVA,
          start: max(start, entryIOVA), end: min(end, entryIOVA + span))
        {
          return found
        }
      }
      index += 1
    }
    return nil
  }

  /// Writes one leaf, allocating the tables on its path. False when table memory is exhausted (the
  /// tables already allocated stay linked, empty, for the caller's rollback to free).
  func installLeaf(iova: UInt64, physical: UInt64, pageSize: PageSize, attributes: UInt64) -> Bool {
    let leafLevel = pageSize.leafLevel
    var table = root.rawValue
    var level = levels
    while level > leafLevel {
      let address = Self.entryAddress(table: table, level: level, iova: iova)
      let entry = RadixPageTableEntry(rawValue: load(address))
      if entry.isPresent {
        precondition(!entry.isLeaf(atLevel: level), "leaf above \(IOVA(iova)) survived the EEXIST check")
        table = entry.address.rawValue
      } else {
        guard let page = memory.allocateTablePage() else { return false }
        Self.checkTablePage(page)
        tablePages += 1
        structureGeneration &+= 1
        store(RadixPageTableEntry.table(page).rawValue, at: address)
        table = page.rawValue
      }
      level -= 1
    }
    let leaf =
      physical | attributes | (leafLevel > 1 ? RadixPageTableEntry.pageSizeBit : 0)
    store(leaf, at: Self.entryAddress(table: table, level: leafLevel, iova: iova))
    return true
  }

  /// Installs the 4 KiB leaf `leaf` (frame | attribute bits) at `iova` in one walk, allocating the
  /// tables on its path: EEXIST when the page, or a large leaf over it, is mapped; ENOMEM (with the
  /// tables allocated on the way freed again) when table memory runs out. The range checks are done.
  @inline(__always)
  func mapOnePage<Access: TableEntryWriter>(_ access: Access, _ iova: UInt64, leaf: UInt64)
    throws(IOMMUError)
  {
    let rw = RadixPageTableEntry.readBit | RadixPageTableEntry.writeBit
    var table = root.rawValue
    var level = levels
    while level > 1 {
      let address = Self.entryAddress(table: table, level: level, iova: iova)
      let raw = access.load(address)
      if raw & rw != 0 {
        if RadixPageTableEntry(rawValue: raw).isLeaf(atLevel: level) {
          let leafIOVA = iova & ~((1 << Self.shift(ofLevel: level)) - 1)
          throw IOMMUError(
            .EEXIST, "\(IOVA(leafIOVA)) is already mapped inside the range mapped at \(IOVA(iova))")
        }
        table = raw & RadixPageTableEntry.addressMask
      } else {
        guard let page = access.allocatePage() else {
          var removed: UInt64 = 0
          var noSink = NoUnmappedLeafSink()
          _ = unmapRange(
            root.rawValue, level: levels, tableIOVA: 0, start: iova, end: iova + PageSize.size4K.bytes,
            pruneUntouched: true, unmapped: &removed, sink: &noSink)
          throw IOMMUError(.ENOMEM, "table memory exhausted mapping \(IOVA(iova)) + 0x1000")
        }
        Self.checkTablePage(page)
        tablePages += 1
        structureGeneration &+= 1
        access.store(RadixPageTableEntry.table(page).rawValue, at: address)
        table = page.rawValue
      }
      level -= 1
    }
    let address = Self.entryAddress(table: table, level: 1, iova: iova)
    if access.load(address) & rw != 0 {
      throw IOMMUError(.EEXIST, "\(IOVA(iova)) is already mapped inside the range mapped at \(IOVA(iova))")
    }
    access.store(leaf, at: address)
  }

  /// Unmaps the one 4 KiB page at `iova` in one walk: 4096, or 0 when `iova` is a hole. Nil — nothing
  /// done — when a large leaf covers `iova`: the general path reports the straddle. No table is freed:
  /// one page never covers a table's whole span.
  @inline(__always)
  func unmapOnePage<Access: TableEntryWriter>(_ access: Access, _ iova: UInt64) -> UInt64? {
    let rw = RadixPageTableEntry.readBit | RadixPageTableEntry.writeBit
    var table = root.rawValue
    var level = levels
    var leafAddress: UInt64 = 0
    while true {
      let address = Self.entryAddress(table: table, level: level, iova: iova)
      let raw = access.load(address)
      guard raw & rw != 0 else { return 0 }
      if level == 1 {
        leafAddress = address
        break
      }
      if RadixPageTableEntry(rawValue: raw).isLeaf(atLevel: level) { return nil }
      table = raw & RadixPageTableEntry.addressMask
      level -= 1
    }
    access.store(0, at: leafAddress)
    mappedBytes -= PageSize.size4K.bytes
    return PageSize.size4K.bytes
  }

  // MARK: - Unmap internals

  /// Clears the leaves of `[start, end)` from `start` upward in the table at `table` (at `level`,
  /// translating from `tableIOVA`), stopping at the first hole, and frees child tables whose whole span
  /// the range covered (and, for a map rollback, every child left empty). Every
  /// leaf met lies wholly inside the range: `unmap` refused straddles before, and a map rollback only
  /// meets its own leaves. Returns true when it stopped at a hole.
  ///
  /// A child is tested for emptiness (up to 512 loads) only when a leaf below it was cleared — an unmap
  /// that finds a hole at once costs one path walk — except with `pruneUntouched`, which a map rollback
  /// sets: the tables it allocated on the path to the failed allocation hold nothing and must go too.
  func unmapRange<Sink: UnmappedLeafSink>(
    _ table: UInt64, level: Int, tableIOVA: UInt64, start: UInt64, end: UInt64, pruneUntouched: Bool,
    unmapped: inout UInt64, sink: inout Sink
  ) -> Bool {
    let shift = Self.shift(ofLevel: level)
    let span: UInt64 = 1 << shift
    var index = (start >> shift) & 511
    let lastIndex = ((end - 1) >> shift) & 511
    while index <= lastIndex {
      let address = table | (index << 3)
      let entry = RadixPageTableEntry(rawValue: load(address))
      guard entry.isPresent else { return true }
      let entryIOVA = tableIOVA | (index << shift)
      if entry.isLeaf(atLevel: level) {
        precondition(entryIOVA >= start && entryIOVA + span <= end, "unmap met a straddling leaf")
        store(0, at: address)
        unmapped += span
        sink.cleared(IOVA(entryIOVA), pageSize: .leaf(atLevel: level))
      } else {
        let child = entry.address.rawValue
        let unmappedBefore = unmapped
        let stopped = unmapRange(
          child, level: level - 1, tableIOVA: entryIOVA, start: max(start, entryIOVA),
          end: min(end, entryIOVA + span), pruneUntouched: pruneUntouched, unmapped: &unmapped, sink: &sink)
        // A map rollback prunes every table it left empty; an unmap frees a child only when the range
        // covered the child's whole span (Linux VT-d domain_unmap).
        let coversChild = start <= entryIOVA && end >= entryIOVA + span
        if (pruneUntouched || (coversChild && unmapped != unmappedBefore)) && isEmptyTable(child) {
          store(0, at: address)
          memory.freeTablePage(PhysicalAddress(child))
          tablePages -= 1
          structureGeneration &+= 1
        }
        if stopped { return true }
      }
      index += 1
    }
    return false
  }
}

/// Receives each leaf an unmap clears.
protocol UnmappedLeafSink {
  mutating func cleared(_ iova: IOVA, pageSize: PageSize)
}

/// Reports nowhere: compiles away on the plain `unmap` path.
struct NoUnmappedLeafSink: UnmappedLeafSink {
  @inline(__always) mutating func cleared(_ iova: IOVA, pageSize: PageSize) {}
}

extension IOTLBGather: UnmappedLeafSink {
  mutating func cleared(_ iova: IOVA, pageSize: PageSize) {
    add(iova, size: pageSize.bytes, pageSize: pageSize)
  }
}
