/// Page walks: `translate` (the hot path, no allocation, no trace), `walk` (with its trace) and the
/// static walks over tables in any memory or behind a checked reader, which the vIOMMU uses on
/// guest-owned tables.
///
/// All of them run the same loop (VT-d "Second-Level Translation": index with 9 IOVA bits per level,
/// stop at a leaf; R and W are ANDed over the levels), specialised at compile time for the table memory
/// and for whether a trace is kept, so the translate path makes no existential call when the memory is
/// a `TablePagePool` and does not allocate.
extension RadixIOPageTable {
  public func translate(_ iova: IOVA) -> IOTranslation? {
    guard iova.rawValue < inputLimit else { return nil }
    var noTrace = NoWalkTrace()
    let outcome: IOPageWalk.Outcome
    if let pool {
      outcome = Self.walkTables(
        OwnPoolReader(pool: pool), root: root.rawValue, levels: levels, iova: iova.rawValue, trace: &noTrace)
    } else {
      outcome = Self.walkTables(
        MemoryReader(memory: memory), root: root.rawValue, levels: levels, iova: iova.rawValue,
        trace: &noTrace)
    }
    if case .translated(let translation) = outcome { return translation }
    return nil
  }

  /// The walk for `iova` with every entry it read, top level first.
  public func walk(_ iova: IOVA) -> IOPageWalk {
    guard iova.rawValue < inputLimit else {
      return IOPageWalk(iova: iova, steps: [], outcome: .faulted(.addressOutOfRange))
    }
    var trace = StepTrace()
    trace.steps.reserveCapacity(levels)
    let outcome: IOPageWalk.Outcome
    if let pool {
      outcome = Self.walkTables(
        OwnPoolReader(pool: pool), root: root.rawValue, levels: levels, iova: iova.rawValue, trace: &trace)
    } else {
      outcome = Self.walkTables(
        MemoryReader(memory: memory), root: root.rawValue, levels: levels, iova: iova.rawValue, trace: &trace)
    }
    return IOPageWalk(iova: iova, steps: trace.steps, outcome: outcome)
  }

  /// Walks tables in Cove's format rooted at `root` in any `memory`: the vIOMMU's walk of a guest's
  /// tables in guest memory. Entries are trusted no further than the format: reserved bits fault.
  ///
  /// - Throws: EINVAL when `root` is not 4 KiB aligned inside the 52-bit address space or the width is
  ///   not 39 or 48 bits (a context entry that names such a table is refused before any walk).
  public static func walk(
    root: PhysicalAddress, memory: any IOTableMemory, iova: IOVA, inputAddressBits: Int = 48
  ) throws(IOMMUError) -> IOPageWalk {
    try walkForeign(MemoryReader(memory: memory), root: root, iova: iova, inputAddressBits: inputAddressBits)
  }

  /// Walks tables in Cove's format rooted at `root` whose entries are read through `readEntry`, which
  /// may refuse a read (nil): the nested walk of a guest's stage-1 tables, where each table address is
  /// guest-physical and reaching it takes a stage-2 translation and the platform's access checks.
  /// A refused read ends the walk with `.tableReadFailed(level:address:)`, naming the level and the
  /// entry's address in the tables' own address space; the trace holds only the entries read.
  ///
  /// `readEntry` is called with 8-byte-aligned entry addresses, top level first, at most once per level.
  ///
  /// - Throws: EINVAL as for `walk(root:memory:iova:inputAddressBits:)`.
  public static func walk(
    root: PhysicalAddress, iova: IOVA, inputAddressBits: Int = 48,
    readEntry: (PhysicalAddress) -> UInt64?
  ) throws(IOMMUError) -> IOPageWalk {
    try withoutActuallyEscaping(readEntry) { (read) throws(IOMMUError) -> IOPageWalk in
      try walkForeign(ClosureReader(read: read), root: root, iova: iova, inputAddressBits: inputAddressBits)
    }
  }

  /// The static walks' checks, then the loop with a trace.
  private static func walkForeign<Reader: WalkEntryReader>(
    _ reader: Reader, root: PhysicalAddress, iova: IOVA, inputAddressBits: Int
  ) throws(IOMMUError) -> IOPageWalk {
    let levels = try Self.levels(forInputAddressBits: inputAddressBits)
    guard root.rawValue % TablePagePool.pageBytes == 0,
      root.rawValue < RadixPageTableEntry.outputAddressLimit
    else {
      throw IOMMUError(.EINVAL, "page-table root \(root) is not a 4 KiB-aligned 52-bit address")
    }
    guard iova.rawValue < 1 << UInt64(inputAddressBits) else {
      return IOPageWalk(iova: iova, steps: [], outcome: .faulted(.addressOutOfRange))
    }
    var trace = StepTrace()
    trace.steps.reserveCapacity(levels)
    let outcome = walkTables(reader, root: root.rawValue, levels: levels, iova: iova.rawValue, trace: &trace)
    return IOPageWalk(iova: iova, steps: trace.steps, outcome: outcome)
  }

  /// The one walk loop. `iova` is inside the table's width.
  @inline(__always)
  static func walkTables<Reader: WalkEntryReader, Trace: WalkTrace>(
    _ reader: Reader, root: UInt64, levels: Int, iova: UInt64, trace: inout Trace
  ) -> IOPageWalk.Outcome {
    let rw = RadixPageTableEntry.readBit | RadixPageTableEntry.writeBit
    var table = root
    var level = levels
    var rights = rw
    while true {
      let address = entryAddress(table: table, level: level, iova: iova)
      // Readers of the table's own memory never fail: their `walkLoad` is `load` wrapped, so once the
      // loop is specialised for them this check folds away.
      guard let raw = reader.walkLoad(address) else {
        return .faulted(.tableReadFailed(level: level, address: PhysicalAddress(address)))
      }
      trace.record(level: level, address: address, entry: raw)
      guard raw & rw != 0 else { return .faulted(.notPresent(level: level)) }
      let entry = RadixPageTableEntry(rawValue: raw)
      let leaf = entry.isLeaf(atLevel: level)
      guard raw & RadixPageTableEntry.reservedMask(level: level, leaf: leaf) == 0 else {
        return .faulted(.reservedBitsSet(level: level))
      }
      rights &= raw
      if leaf {
        let offsetMask: UInt64 = (1 &<< shift(ofLevel: level)) &- 1
        var protection = IOProtection(rawValue: UInt8(truncatingIfNeeded: rights))  // R, W: bits 0, 1
        if raw & RadixPageTableEntry.sharedBit != 0 { protection.insert(.shared) }
        return .translated(
          IOTranslation(
            physical: PhysicalAddress((raw & RadixPageTableEntry.addressMask) | (iova & offsetMask)),
            protection: protection, pageSize: .leaf(atLevel: level)))
      }
      table = raw & RadixPageTableEntry.addressMask
      level &-= 1
    }
  }
}

/// Reads entries for a walk; a read may fail (nil) when the tables sit behind checks (a guest's tables
/// walked by the vIOMMU). Specialised per reader so the pool path makes direct calls.
protocol WalkEntryReader {
  func walkLoad(_ address: UInt64) -> UInt64?
}

/// Reads entries of memory that always answers: a table's own memory.
protocol TableEntryReader: WalkEntryReader {
  func load(_ address: UInt64) -> UInt64
}

extension TableEntryReader {
  @inline(__always) func walkLoad(_ address: UInt64) -> UInt64? { load(address) }
}

/// Entries through a caller's closure, which may refuse a read.
struct ClosureReader: WalkEntryReader {
  let read: (PhysicalAddress) -> UInt64?
  @inline(__always) func walkLoad(_ address: UInt64) -> UInt64? { read(PhysicalAddress(address)) }
}

/// Reads and writes a table's own entries and pages; specialised per memory like `TableEntryReader`,
/// for the one-walk map and unmap of a single page.
protocol TableEntryWriter: TableEntryReader {
  func store(_ value: UInt64, at address: UInt64)
  func allocatePage() -> PhysicalAddress?
  func freePage(_ page: UInt64)
  /// Whether the table page at `page` has no present entry.
  func isEmptyTable(_ page: UInt64) -> Bool
}

/// A table's own pool: entries this table wrote, read without the allocation check. The pool is held
/// unretained (the table's `memory` keeps it alive), so building a reader costs no retain/release.
struct OwnPoolReader: TableEntryWriter {
  let pool: Unmanaged<TablePagePool>
  @inline(__always) func load(_ address: UInt64) -> UInt64 {
    pool._withUnsafeGuaranteedRef { $0.loadOwnEntry(address) }
  }
  @inline(__always) func store(_ value: UInt64, at address: UInt64) {
    pool._withUnsafeGuaranteedRef { $0.storeOwnEntry(value, at: address) }
  }
  @inline(__always) func allocatePage() -> PhysicalAddress? {
    pool._withUnsafeGuaranteedRef { $0.allocateTablePage() }
  }
  @inline(__always) func freePage(_ page: UInt64) {
    pool._withUnsafeGuaranteedRef { $0.freeTablePage(PhysicalAddress(page)) }
  }
  @inline(__always) func isEmptyTable(_ page: UInt64) -> Bool {
    pool._withUnsafeGuaranteedRef { !$0.hasPresentEntry(inPage: page) }
  }
}

/// Any table memory, through the protocol (checked loads).
struct MemoryReader: TableEntryWriter {
  let memory: any IOTableMemory
  @inline(__always) func load(_ address: UInt64) -> UInt64 { memory.loadEntry(PhysicalAddress(address)) }
  @inline(__always) func store(_ value: UInt64, at address: UInt64) {
    memory.storeEntry(value, at: PhysicalAddress(address))
  }
  @inline(__always) func allocatePage() -> PhysicalAddress? { memory.allocateTablePage() }
  @inline(__always) func freePage(_ page: UInt64) { memory.freeTablePage(PhysicalAddress(page)) }
  func isEmptyTable(_ page: UInt64) -> Bool {
    var offset: UInt64 = 0
    while offset < TablePagePool.pageBytes {
      if load(page | offset) & (RadixPageTableEntry.readBit | RadixPageTableEntry.writeBit) != 0 {
        return false
      }
      offset += 8
    }
    return true
  }
}

/// Receives each entry a walk reads.
protocol WalkTrace {
  mutating func record(level: Int, address: UInt64, entry: UInt64)
}

/// No trace: compiles away on the translate path.
struct NoWalkTrace: WalkTrace {
  @inline(__always) mutating func record(level: Int, address: UInt64, entry: UInt64) {}
}

/// The steps of `IOPageWalk`.
struct StepTrace: WalkTrace {
  var steps: [IOPageWalk.Step] = []
  mutating func record(level: Int, address: UInt64, entry: UInt64) {
    steps.append(
      IOPageWalk.Step(
        level: level, entryAddress: PhysicalAddress(address), entry: RadixPageTableEntry(rawValue: entry)))
  }
}
