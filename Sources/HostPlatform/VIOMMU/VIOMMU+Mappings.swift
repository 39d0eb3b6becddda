import IOMMU
public import PCIe

extension VIOMMU {
  /// Whether any of `requesters` can reach a guest-physical page in `pages` through a private
  /// (non-shared) translation — "the device has the page mapped private": either the vIOMMU's cache
  /// still holds such a translation for one of their domains (it would serve it until the guest
  /// invalidates), or one of their attached tables maps it now. Tables are read as the walk reads
  /// them (stage 2, then the owner-checked read); entries that cannot be read or are malformed map
  /// nothing. Reads every present entry of those tables: cost grows with what the guest has mapped,
  /// acceptable for a conversion (a rare, slow-path hypercall).
  public func mapsPrivately(_ pages: Range<UInt64>, for requesters: Set<RequesterID>) -> Bool {
    let pageSize: UInt64 = 4096
    let byteRange = pages.lowerBound * pageSize..<pages.upperBound * pageSize
    for (key, table) in attachments where requesters.contains(key.requester) {
      let cached = iotlb.containsEntry(of: table.domain) { base, size, protection in
        !protection.contains(.shared) && (base..<base &+ size).overlaps(byteRange)
      }
      if cached { return true }
      let levels = table.inputAddressBits == 48 ? 4 : 3
      var stack: [(table: UInt64, level: Int)] = [(table.root.rawValue, levels)]
      // Levels strictly decrease, so there are no cycles; a page reached again at the same level
      // (a shared subtree) is read once. The same page at another level means other things there.
      var visited: Set<[UInt64]> = []
      while let (tableGPA, level) = stack.popLast() {
        guard visited.insert([tableGPA, UInt64(level)]).inserted,
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
