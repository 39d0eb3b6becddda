/// The `IOPageTableProtocol` contract written as plainly as possible, to test real page tables
/// against: a dictionary from each leaf's first IOVA to the leaf. No table memory, no levels — so it
/// never fails with ENOMEM — but the same leaves as a radix table (same iommu_pgsize choice of page
/// sizes), so that "this unmap would split a 2 MiB leaf" and "stop at the first hole" come out the
/// same. Every check is in the same order as `RadixIOPageTable`'s so the errno of a refused call
/// matches too.
///
/// Public because other parts of the IOMMU core (domains, IOTLB, DMA API) test against it as well.
public final class ReferenceIOPageTable: IOPageTableProtocol {
  private struct Leaf {
    var physical: UInt64
    var pageSize: PageSize
    var protection: IOProtection
  }

  /// Leaves by the IOVA of their first byte. A leaf of size S starts at an S-aligned IOVA.
  private var leaves: [UInt64: Leaf] = [:]
  /// IOVA bits accepted, as for `RadixIOPageTable`: 39 or 48.
  public let inputAddressBits: Int
  public private(set) var mappedBytes: UInt64 = 0

  private var inputLimit: UInt64 { 1 << UInt64(inputAddressBits) }

  /// - Throws: EINVAL for an input width other than 39 or 48 bits.
  public init(inputAddressBits: Int = 48) throws(IOMMUError) {
    guard inputAddressBits == 39 || inputAddressBits == 48 else {
      throw IOMMUError(.EINVAL, "unsupported input width \(inputAddressBits) bits (39 or 48)")
    }
    self.inputAddressBits = inputAddressBits
  }

  public func map(_ iova: IOVA, to physical: PhysicalAddress, size: UInt64, protection: IOProtection)
    throws(IOMMUError)
  {
    guard protection.isSubset(of: [.read, .write, .shared]), !protection.isDisjoint(with: .readWrite) else {
      throw IOMMUError(.EINVAL, "protection \(protection.rawValue) grants no access or has unknown bits")
    }
    guard (iova.rawValue | physical.rawValue | size) % 4096 == 0 else {
      throw IOMMUError(.EINVAL, "map: address or size not 4 KiB aligned")
    }
    if size == 0 { return }
    guard iova.rawValue < inputLimit, size <= inputLimit - iova.rawValue,
      physical.rawValue <= RadixPageTableEntry.outputAddressLimit - size
    else {
      throw IOMMUError(.ERANGE, "map: range beyond the input or output address width")
    }
    let start = iova.rawValue
    let end = start + size
    if anyLeafIntersects(start: start, end: end) {
      throw IOMMUError(.EEXIST, "map: something in the range is already mapped")
    }
    var address = start
    while address < end {
      let frame = physical.rawValue + (address - start)
      var pageSize = PageSize.size4K
      for candidate in [PageSize.size1G, .size2M]
      where (address | frame) % candidate.bytes == 0 && candidate.bytes <= end - address {
        pageSize = candidate
        break
      }
      leaves[address] = Leaf(physical: frame, pageSize: pageSize, protection: protection)
      address += pageSize.bytes
    }
    mappedBytes += size
  }

  public func unmap(_ iova: IOVA, size: UInt64) throws(IOMMUError) -> UInt64 {
    guard (iova.rawValue | size) % 4096 == 0 else {
      throw IOMMUError(.EINVAL, "unmap: address or size not 4 KiB aligned")
    }
    if size == 0 { return 0 }
    guard iova.rawValue < inputLimit, size <= inputLimit - iova.rawValue else {
      throw IOMMUError(.ERANGE, "unmap: range beyond the input address width")
    }
    let start = iova.rawValue
    let end = start + size
    if let (leafStart, _) = leaf(covering: start), leafStart != start {
      throw IOMMUError(.EINVAL, "unmap would split the leaf at its start")
    }
    if let (leafStart, leaf) = leaf(covering: end - 1), leafStart + leaf.pageSize.bytes != end {
      throw IOMMUError(.EINVAL, "unmap would split the leaf at its end")
    }
    var address = start
    while address < end, let leaf = leaves.removeValue(forKey: address) {
      address += leaf.pageSize.bytes
    }
    let unmapped = address - start
    mappedBytes -= unmapped
    return unmapped
  }

  public func translate(_ iova: IOVA) -> IOTranslation? {
    guard let (leafStart, leaf) = leaf(covering: iova.rawValue) else { return nil }
    return IOTranslation(
      physical: PhysicalAddress(leaf.physical + (iova.rawValue - leafStart)), protection: leaf.protection,
      pageSize: leaf.pageSize)
  }

  /// Every leaf, in IOVA order.
  public func mappings() -> [IOLeafMapping] {
    leaves.sorted { $0.key < $1.key }.map {
      IOLeafMapping(
        iova: IOVA($0.key), physical: PhysicalAddress($0.value.physical), pageSize: $0.value.pageSize,
        protection: $0.value.protection)
    }
  }

  /// The leaf holding `address`: it can only start at `address` rounded down to one of the three sizes.
  private func leaf(covering address: UInt64) -> (UInt64, Leaf)? {
    for pageSize in PageSize.allCases {
      let candidate = address & ~(pageSize.bytes - 1)
      if let leaf = leaves[candidate], leaf.pageSize == pageSize { return (candidate, leaf) }
    }
    return nil
  }

  /// Whether any leaf intersects `[start, end)`: by probing each 4 KiB page of a short range, or by
  /// looking at every leaf when there are fewer leaves than pages.
  private func anyLeafIntersects(start: UInt64, end: UInt64) -> Bool {
    let pages = (end - start) / 4096
    if pages <= UInt64(leaves.count) {
      return stride(from: start, to: end, by: 4096).contains { leaf(covering: $0) != nil }
    }
    return leaves.contains { $0.key < end && start < $0.key + $0.value.pageSize.bytes }
  }
}
