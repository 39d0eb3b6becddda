import IOMMU

/// A page table for tests: one dictionary entry per 4 KiB page, following IOPageTableProtocol's
/// contract (alignment EINVAL, 48-bit input ERANGE, overlap EEXIST, nothing changed on failure,
/// unmap stops at the first hole). It stands in for the real radix table, which the core must not
/// depend on.
final class DictionaryPageTable: IOPageTableProtocol {
  static let page = PageSize.size4K.bytes
  static let inputLimit: UInt64 = 1 << 48

  private(set) var entries: [UInt64: (PhysicalAddress, IOProtection)] = [:]

  var mappedBytes: UInt64 { UInt64(entries.count) * Self.page }

  func map(_ iova: IOVA, to physical: PhysicalAddress, size: UInt64, protection: IOProtection)
    throws(IOMMUError)
  {
    let mask = Self.page - 1
    guard size > 0, iova.rawValue & mask == 0, physical.rawValue & mask == 0, size & mask == 0 else {
      throw IOMMUError(.EINVAL, "misaligned map")
    }
    let (end, overflow) = iova.rawValue.addingReportingOverflow(size)
    guard !overflow, end <= Self.inputLimit else { throw IOMMUError(.ERANGE, "beyond 48 bits") }
    for page in stride(from: iova.rawValue, to: end, by: Int(Self.page)) where entries[page] != nil {
      throw IOMMUError(.EEXIST, "page 0x\(String(page, radix: 16)) already mapped")
    }
    for offset in stride(from: UInt64(0), to: size, by: Int(Self.page)) {
      entries[iova.rawValue + offset] = (physical.advanced(by: offset), protection)
    }
  }

  func unmap(_ iova: IOVA, size: UInt64) throws(IOMMUError) -> UInt64 {
    let mask = Self.page - 1
    guard iova.rawValue & mask == 0, size & mask == 0 else { throw IOMMUError(.EINVAL, "misaligned unmap") }
    var unmapped: UInt64 = 0
    while unmapped < size, entries.removeValue(forKey: iova.rawValue &+ unmapped) != nil {
      unmapped += Self.page
    }
    return unmapped
  }

  func translate(_ iova: IOVA) -> IOTranslation? {
    let base = iova.rawValue & ~(Self.page - 1)
    guard let (physical, protection) = entries[base] else { return nil }
    return IOTranslation(
      physical: physical.advanced(by: iova.rawValue - base), protection: protection, pageSize: .size4K)
  }
}

/// A core whose paging domains use ``DictionaryPageTable``.
func makeCore(_ configuration: IOMMUCore.Configuration = .init()) throws -> IOMMUCore {
  try IOMMUCore(configuration: configuration) { _ throws(IOMMUError) in DictionaryPageTable() }
}
