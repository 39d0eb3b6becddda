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
