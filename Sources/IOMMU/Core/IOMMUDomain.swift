/// Makes the page table of a new paging-capable domain (dma, dmaFQ, paging, or the stage 1 of a
/// nested domain). Injected so the core does not depend on one page-table implementation.
public typealias IOPageTableFactory = (DomainType) throws(IOMMUError) -> any IOPageTableProtocol

/// An I/O address space (Linux struct iommu_domain, SEMANTICS.md §2).
///
/// Blocked and identity domains have no table; dma, dmaFQ and paging own one; a nested domain owns
/// its stage-1 table and translates its output through its stage-2 `parent`; an SVA domain uses a
/// process's CPU page tables.
public final class IOMMUDomain: CustomStringConvertible {
  public let id: DomainID
  public let type: DomainType
  /// The stage-2 domain of a nested domain (always `.paging`).
  public let parent: IOMMUDomain?
  /// The process address space of an SVA domain.
  public let addressSpace: ProcessAddressSpace?
  /// The I/O page table of a paging-capable domain (nil for blocked, identity and SVA). A guest's
  /// IOMMU driver reads its root to point the vIOMMU at it.
  public let pageTable: (any IOPageTableProtocol)?
  /// Identifies the core that made the domain: a domain from another core is refused (EINVAL), as
  /// Linux refuses a domain whose owner ops differ from the device's.
  let owner: ObjectIdentifier
  /// The core's IOTLB, invalidated when this domain unmaps.
  let iotlb: IOTLB?
  /// The DMA API over a dma / dmaFQ domain (dma-iommu): IOVA allocation, strict or lazy unmap.
  public let dma: DMAMappingLayer?
  /// Nested domains whose stage 2 is this domain: their cached translations depend on its table.
  var nestedChildren: [DomainID] = []

  init(
    id: DomainID, type: DomainType, owner: ObjectIdentifier, pageTable: (any IOPageTableProtocol)?,
    parent: IOMMUDomain? = nil, addressSpace: ProcessAddressSpace? = nil, iotlb: IOTLB? = nil,
    dma: DMAMappingLayer? = nil
  ) {
    self.id = id
    self.type = type
    self.owner = owner
    self.pageTable = pageTable
    self.parent = parent
    self.addressSpace = addressSpace
    self.iotlb = iotlb
    self.dma = dma
  }

  public var description: String { "\(id) (\(type))" }

  /// Maps [iova, iova + size) to physical (iommu_map). EINVAL if the domain is not paging-capable
  /// (no __IOMMU_DOMAIN_PAGING); otherwise the page table's contract applies (alignment EINVAL, range
  /// ERANGE, overlap EEXIST, partial map rolled back). A nested domain maps into its stage 1.
  public func map(_ iova: IOVA, to physical: PhysicalAddress, size: UInt64, protection: IOProtection)
    throws(IOMMUError)
  {
    try pagingTable("map").map(iova, to: physical, size: size, protection: protection)
  }

  /// Unmaps from `iova` up to `size` bytes, stopping at the first hole; returns the bytes unmapped
  /// (iommu_unmap). EINVAL if the domain is not paging-capable (Linux returns 0 there; Cove throws so
  /// the misuse is visible).
  ///
  /// Like iommu_unmap, the IOTLB is synchronised before returning (every PASID of the domain, and
  /// every nested domain built on it), so no stale translation survives an unmap.
  public func unmap(_ iova: IOVA, size: UInt64) throws(IOMMUError) -> UInt64 {
    let unmapped = try pagingTable("unmap").unmap(iova, size: size)
    if unmapped > 0, let iotlb {
      iotlb.invalidate(domain: id, pasid: nil, range: iova..<iova.advanced(by: unmapped))
      for child in nestedChildren { iotlb.invalidate(domain: child) }
    }
    return unmapped
  }

  /// iommu_iova_to_phys: identity returns the IOVA, blocked returns nil (the access faults), a paging
  /// domain walks its table, a nested domain walks stage 1 then stage 2, an SVA domain walks the
  /// process's page tables (nil once it exited).
  public func iovaToPhys(_ iova: IOVA) -> PhysicalAddress? {
    lookup(iova).map(\.physical)
  }

  /// The full translation of one IOVA (output address, rights, leaf size), or nil when nothing maps
  /// it; no IOTLB involved.
  public func translation(of iova: IOVA) -> IOTranslation? { lookup(iova) }

  /// The full translation of one IOVA, or nil when nothing maps it.
  func lookup(_ iova: IOVA) -> IOTranslation? {
    switch type {
    case .blocked:
      return nil
    case .identity:
      return IOTranslation(
        physical: PhysicalAddress(iova.rawValue), protection: .readWrite, pageSize: .size4K)
    case .sva:
      guard let space = addressSpace, let entry = space.lookup(VirtualAddress(iova.rawValue)) else {
        return nil
      }
      let offset = iova.rawValue & (PageSize.size4K.bytes - 1)
      return IOTranslation(
        physical: entry.frame.advanced(by: offset),
        protection: entry.writable ? .readWrite : .read, pageSize: .size4K)
    case .nested:
      guard let stage1 = pageTable?.translate(iova), let parent,
        let stage2 = parent.lookup(IOVA(stage1.physical.rawValue))
      else { return nil }
      let rights = stage1.protection.intersection(stage2.protection).intersection(.readWrite)
      return IOTranslation(
        physical: stage2.physical,
        protection: rights.union(stage1.protection.intersection(.shared)),
        pageSize: min(stage1.pageSize, stage2.pageSize))
    case .dma, .dmaFQ, .paging:
      return pageTable?.translate(iova)
    }
  }

  private func pagingTable(_ operation: String) throws(IOMMUError) -> any IOPageTableProtocol {
    guard type.isPaging, let pageTable else {
      throw IOMMUError(.EINVAL, "\(operation) on \(self): not a paging domain")
    }
    return pageTable
  }
}
