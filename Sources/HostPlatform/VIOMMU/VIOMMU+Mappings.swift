import IOMMU
public import PCIe

extension VIOMMU {
  /// Whether any of `requesters`' attached guest tables currently maps some IOVA to a guest-physical
  /// page in `pages` without the shared bit — "the device has the page mapped private". The tables
  /// are read as the walk reads them (stage 2, then the owner-checked read); entries that cannot be
  /// read or are malformed map nothing. Reads every present entry of those tables: cost grows with
  /// what the guest has mapped, which is acceptable for a conversion (a rare, slow-path hypercall).
  public func mapsPrivately(_ pages: Range<UInt64>, for requesters: Set<RequesterID>) -> Bool {
    let pageSize: UInt64 = 4096
    for (key, table) in attachments where requesters.contains(key.requester) {
      let levels = table.inputAddressBits == 48 ? 4 : 3
      var stack: [(table: UInt64, level: Int)] = [(table.root.rawValue, levels)]
      // A guest could make its tables point back at themselves: each table page is visited once.
      var visited: Set<UInt64> = []
      while let (tableGPA, level) = stack.popLast() {
        guard visited.insert(tableGPA).inserted,
          let host = stage2Map.hostAddress(of: PhysicalAddress(tableGPA), for: guest)
        else { continue }
        for index in 0..<512 {
          guard let raw = memory.readWord(at: PhysicalAddress(host.rawValue + UInt64(index) * 8), for: guest)
          else {
            break
          }
          let entry = RadixPageTableEntry(rawValue: raw)
          guard entry.isPresent, !entry.hasReservedBits(atLevel: level) else { continue }
          if entry.isLeaf(atLevel: level) {
            guard !entry.protection.contains(.shared) else { continue }
            let span = UInt64(1) << (12 + 9 * UInt64(level - 1))
            let first = entry.address.rawValue / pageSize
            let last = first + span / pageSize
            if first < pages.upperBound, pages.lowerBound < last { return true }
          } else {
            stack.append((entry.address.rawValue, level - 1))
          }
        }
      }
    }
    return false
  }
}
