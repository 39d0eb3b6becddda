import HostPlatform
import IOMMU

/// An independent, deliberately plain nested walk for differential tests: the entry format written out
/// bit by bit from its documentation (RadixPageTableEntry.swift, README.md of the vIOMMU), sharing no
/// code with the IOMMU core's walk loop or its masks.
enum ReferenceNestedWalk {
  static func translate(
    _ iova: UInt64, access: IOAccess, root: UInt64, bits: Int, guest: GuestID, memory: FakeGuestMemory
  ) -> Result<NestedTranslation, VIOMMUFault> {
    if bits == 39 {
      if iova >= 0x80_0000_0000 { return .failure(.addressOutOfRange) }
    } else if iova >= 0x1_0000_0000_0000 {
      return .failure(.addressOutOfRange)
    }
    var table = root
    var mayRead = true
    var mayWrite = true
    var level = bits == 39 ? 3 : 4
    while level >= 1 {
      let shift = UInt64(12 + 9 * (level - 1))
      let index = (iova >> shift) % 512
      let entryGPA = table + index * 8
      guard let host = memory.hostAddress(of: PhysicalAddress(entryGPA), for: guest) else {
        return .failure(.stage1TableNotMapped(level: level, entry: PhysicalAddress(entryGPA)))
      }
      guard let entry = memory.readWord(at: host, for: guest) else {
        return .failure(.stage1TableReadRefused(level: level, entry: PhysicalAddress(entryGPA)))
      }
      let r = entry & 1 == 1
      let w = (entry >> 1) & 1 == 1
      if !r && !w { return .failure(.stage1NotPresent(level: level)) }
      let ps = (entry >> 7) & 1 == 1
      let s = (entry >> 11) & 1 == 1
      let isLeaf = level == 1 || (ps && (level == 2 || level == 3))
      var reserved = entry >> 52 != 0 || (entry >> 8) & 0b111 != 0 || (entry >> 2) & 0b11111 != 0
      if !isLeaf {
        if s { reserved = true }
        if level == 4 && ps { reserved = true }
      } else if level == 1 {
        if ps { reserved = true }
      } else if level == 2 {
        if (entry >> 12) & 0x1FF != 0 { reserved = true }  // frame bits 20:12 of a 2 MiB page
      } else if (entry >> 12) & 0x3_FFFF != 0 {  // frame bits 29:12 of a 1 GiB page
        reserved = true
      }
      if reserved { return .failure(.stage1ReservedBits(level: level)) }
      mayRead = mayRead && r
      mayWrite = mayWrite && w
      let frame = (entry >> 12) % (1 << 40) * 4096
      if isLeaf {
        let pageBytes: UInt64 = 1 << shift
        let gpa = frame + iova % pageBytes
        let allowed = access == .read ? mayRead : mayWrite
        if !allowed { return .failure(.permission) }
        guard let hpa = memory.hostAddress(of: PhysicalAddress(gpa), for: guest) else {
          return .failure(.stage2OutputNotMapped(output: PhysicalAddress(gpa)))
        }
        var protection: IOProtection = []
        if mayRead { protection.insert(.read) }
        if mayWrite { protection.insert(.write) }
        if s { protection.insert(.shared) }
        let size: PageSize = level == 1 ? .size4K : (level == 2 ? .size2M : .size1G)
        return .success(
          NestedTranslation(
            guestPhysical: PhysicalAddress(gpa), hostPhysical: hpa, protection: protection,
            stage1PageSize: size))
      }
      table = frame
      level -= 1
    }
    preconditionFailure("a level-1 entry is always a leaf")
  }
}

/// The mappings a test asked for, as a plain list: what a translation must give when nothing was
/// corrupted on the way.
struct MappingModel {
  struct Leaf {
    var iova: UInt64
    var gpa: UInt64
    var size: PageSize
    var protection: IOProtection
  }
  var leaves: [Leaf] = []

  func leaf(containing iova: UInt64) -> Leaf? {
    leaves.first { iova >= $0.iova && iova - $0.iova < $0.size.bytes }
  }
}
