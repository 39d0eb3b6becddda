public import IOMMU

/// A guest-managed I/O address space: the root of the guest's stage-1 tables (guest-physical, in the
/// IOMMU core's format, `RadixPageTableEntry`), their input width, and the domain ID the guest tags it
/// with — what a VT-d context or PASID-table entry of a nested domain holds for its first stage.
public struct GuestIOTable: Hashable, Sendable, CustomStringConvertible {
  /// The tag the vIOMMU's cache keeps this table's translations under, and the guest invalidates by.
  public let domain: DomainID
  /// The guest-physical address of the top-level table.
  public let root: PhysicalAddress
  /// 48 (4 levels) or 39 (3 levels).
  public let inputAddressBits: Int

  /// - Throws: EINVAL when `root` is not a 4 KiB-aligned address an entry can hold (below 2^52) or
  ///   the width is not 39 or 48 bits (VT-d SAGAW: 3- and 4-level tables).
  public init(domain: DomainID, root: PhysicalAddress, inputAddressBits: Int) throws(IOMMUError) {
    guard inputAddressBits == 39 || inputAddressBits == 48 else {
      throw IOMMUError(.EINVAL, "guest table width \(inputAddressBits) bits (39 or 48)")
    }
    guard root.rawValue % 4096 == 0, root.rawValue < RadixPageTableEntry.outputAddressLimit else {
      throw IOMMUError(
        .EINVAL, "guest table root gpa 0x\(String(root.rawValue, radix: 16)) is not a 4 KiB page")
    }
    self.domain = domain
    self.root = root
    self.inputAddressBits = inputAddressBits
  }

  /// Whether `iova` lies inside the table's input width.
  public func covers(_ iova: IOVA) -> Bool { iova.rawValue >> UInt64(inputAddressBits) == 0 }

  public var description: String {
    "\(domain) root gpa 0x\(String(root.rawValue, radix: 16)) \(inputAddressBits)-bit"
  }
}

/// The result of a nested translation: stage 1 (the guest's tables) took the IOVA to `guestPhysical`
/// with `protection`; stage 2 (the platform's) took that to `hostPhysical`.
public struct NestedTranslation: Hashable, Sendable, CustomStringConvertible {
  public var guestPhysical: PhysicalAddress
  /// Valid for the 4 KiB page that holds `guestPhysical` only: stage 2 maps page by page.
  public var hostPhysical: PhysicalAddress
  /// R and W as the guest's entries grant them (ANDed over the levels), and S: whether the guest marked
  /// the target shared. The IOMMU hardware model checks S against the TLP's T bit and the page's state
  /// (SEMANTICS.md §5); the vIOMMU only reports it.
  public var protection: IOProtection
  /// The size of the guest's leaf.
  public var stage1PageSize: PageSize

  public init(
    guestPhysical: PhysicalAddress, hostPhysical: PhysicalAddress, protection: IOProtection,
    stage1PageSize: PageSize
  ) {
    self.guestPhysical = guestPhysical
    self.hostPhysical = hostPhysical
    self.protection = protection
    self.stage1PageSize = stage1PageSize
  }

  public var description: String {
    "gpa 0x\(String(guestPhysical.rawValue, radix: 16)) -> hpa 0x\(String(hostPhysical.rawValue, radix: 16))"
      + " \(protection) (\(stage1PageSize.bytes >> 10) KiB stage-1 leaf)"
  }
}

/// The nested walk, uncached: stage 1 through the guest's tables in guest memory, each table entry
/// reached by a stage-2 translation and read through the platform's access checks, then stage 2 of the
/// output. ``VIOMMU`` puts its cache between the two halves; tests call them directly.
public enum NestedWalk {
  /// Stage 1: `iova` → guest-physical with the rights and S bit of the guest's entries.
  ///
  /// The entry at each level is at a guest-physical address; it is read only after stage 2 maps it
  /// (else `.stage1TableNotMapped`) and the platform's reader agrees (else `.stage1TableReadRefused`),
  /// both naming the level and the entry's guest-physical address. Otherwise the walk is the IOMMU
  /// core's own walk of its format: not present and reserved bits fault at their level.
  public static func stage1(
    _ iova: IOVA, table: GuestIOTable, guest: GuestID, stage2: some GuestPhysicalMap,
    memory: some GuestMemoryReader
  ) -> Result<IOTranslation, VIOMMUFault> {
    guard table.covers(iova) else { return .failure(.addressOutOfRange) }
    var unmapped = false
    let walk: IOPageWalk
    do {
      walk = try RadixIOPageTable.walk(root: table.root, iova: iova, inputAddressBits: table.inputAddressBits)
      {
        entry in
        guard let host = stage2.hostAddress(of: entry, for: guest) else {
          unmapped = true
          return nil
        }
        return memory.readWord(at: host, for: guest)
      }
    } catch {
      preconditionFailure("GuestIOTable validated root and width: \(error)")
    }
    switch walk.outcome {
    case .translated(let translation): return .success(translation)
    case .faulted(.addressOutOfRange): return .failure(.addressOutOfRange)
    case .faulted(.notPresent(let level)): return .failure(.stage1NotPresent(level: level))
    case .faulted(.reservedBitsSet(let level)): return .failure(.stage1ReservedBits(level: level))
    case .faulted(.tableReadFailed(let level, let entry)):
      return .failure(
        unmapped
          ? .stage1TableNotMapped(level: level, entry: entry)
          : .stage1TableReadRefused(level: level, entry: entry))
    }
  }

  /// Stage 2 of a stage-1 result for `access`: the permission check against the guest's rights (a
  /// fault of the guest's tables, so it comes first), then the platform's stage 2 of the output.
  public static func stage2(
    _ stage1: IOTranslation, access: IOAccess, guest: GuestID, stage2: some GuestPhysicalMap
  ) -> Result<NestedTranslation, VIOMMUFault> {
    guard stage1.protection.contains(access.requiredProtection) else { return .failure(.permission) }
    guard let host = stage2.hostAddress(of: stage1.physical, for: guest) else {
      return .failure(.stage2OutputNotMapped(output: stage1.physical))
    }
    return .success(
      NestedTranslation(
        guestPhysical: stage1.physical, hostPhysical: host, protection: stage1.protection,
        stage1PageSize: stage1.pageSize))
  }

  /// Both stages, no cache.
  public static func translate(
    _ iova: IOVA, access: IOAccess, table: GuestIOTable, guest: GuestID, stage2: some GuestPhysicalMap,
    memory: some GuestMemoryReader
  ) -> Result<NestedTranslation, VIOMMUFault> {
    stage1(iova, table: table, guest: guest, stage2: stage2, memory: memory).flatMap {
      Self.stage2($0, access: access, guest: guest, stage2: stage2)
    }
  }
}
