import IOMMU

/// The errno a call threw, or nil when it succeeded. (Closures infer untyped throws, so this takes
/// any error; one that is not an `IOMMUError` reads as errno -1 and fails every comparison.)
func thrownErrno(_ body: () throws -> Void) -> Errno? {
  do {
    try body()
    return nil
  } catch let error as IOMMUError {
    return error.errno
  } catch {
    return Errno(rawValue: -1)
  }
}

/// Every allocated page of `pool` with its 512 entries: a full dump of the table memory, to show that
/// a refused call changed nothing.
func memoryDump(_ pool: TablePagePool) -> [PhysicalAddress: [UInt64]] {
  var dump: [PhysicalAddress: [UInt64]] = [:]
  for page in pool.allocatedPageAddresses {
    dump[page] = (0..<512).map { pool.loadEntry(page.advanced(by: UInt64($0) * 8)) }
  }
  return dump
}

/// A pool and a 48-bit table on it; the root is the pool's first page, 0x1_0000_0000.
func makeTable(maxPages: Int = 4096, inputAddressBits: Int = 48) throws -> (TablePagePool, RadixIOPageTable) {
  let pool = try TablePagePool(maxPages: maxPages)
  let table = try RadixIOPageTable(memory: pool, inputAddressBits: inputAddressBits)
  return (pool, table)
}

/// SplitMix64 (Steele, Lea, Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014):
/// a tiny deterministic generator, so every property-test run replays exactly.
struct SplitMix64 {
  var state: UInt64

  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }

  /// Uniform enough in `0..<bound` for test generation (bound > 0).
  mutating func below(_ bound: UInt64) -> UInt64 { next() % bound }

  /// True with `percent` % probability.
  mutating func chance(_ percent: UInt64) -> Bool { below(100) < percent }
}
