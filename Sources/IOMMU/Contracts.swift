/// The contracts between the IOMMU core's parts: where page-table pages live, what a page table
/// does, and what kinds of domain exist. Implementations live beside them in this module.

/// Memory that holds I/O page-table pages. The host's tables live in host memory; a guest's stage-1
/// tables live in the guest's (private) memory and the vIOMMU walks them there, so the page table
/// reads and writes its entries only through this protocol, as 64-bit little-endian words.
public protocol IOTableMemory: AnyObject {
  /// A zeroed, 4 KiB-aligned page for one table level; nil when memory is exhausted (ENOMEM).
  func allocateTablePage() -> PhysicalAddress?
  /// Returns a table page; its contents are no longer read.
  func freeTablePage(_ page: PhysicalAddress)
  /// The 64-bit entry at an 8-byte-aligned address inside a table page.
  func loadEntry(_ address: PhysicalAddress) -> UInt64
  func storeEntry(_ value: UInt64, at address: PhysicalAddress)
}

/// An I/O page table: the IOVA → physical map of one paging-capable domain (iommu_map/iommu_unmap/
/// iommu_iova_to_phys in Linux, SEMANTICS.md §2).
///
/// - `map`: `iova`, `physical` and `size` must be 4 KiB aligned, else EINVAL; the range must lie
///   inside the table's input address width, else ERANGE; any page already mapped in the range →
///   EEXIST. Large leaves (2 MiB, 1 GiB) are used where alignment and size allow. A failure leaves
///   the table exactly as before (a partial map is rolled back). Table memory exhausted → ENOMEM.
/// - `unmap`: alignment as for map (EINVAL). A leaf that straddles either end of the range would have
///   to be split: EINVAL, nothing unmapped. Otherwise unmaps from `iova` upward and stops at the
///   first hole, returning the bytes unmapped (0 when `iova` itself is a hole).
/// - `translate`: the output address of one IOVA with the leaf's rights, or nil when unmapped.
public protocol IOPageTableProtocol: AnyObject {
  func map(_ iova: IOVA, to physical: PhysicalAddress, size: UInt64, protection: IOProtection)
    throws(IOMMUError)
  func unmap(_ iova: IOVA, size: UInt64) throws(IOMMUError) -> UInt64
  func translate(_ iova: IOVA) -> IOTranslation?
  /// Bytes currently mapped.
  var mappedBytes: UInt64 { get }
}

/// Domain types (SEMANTICS.md §2; Linux IOMMU_DOMAIN_*).
public enum DomainType: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
  /// All DMA blocked (IOMMU_DOMAIN_BLOCKED).
  case blocked
  /// IOVA = physical address (IOMMU_DOMAIN_IDENTITY); never a confidential guest's default.
  case identity
  /// Kernel DMA API domain, strict invalidation (IOMMU_DOMAIN_DMA).
  case dma
  /// Kernel DMA API domain with a flush queue, lazy invalidation (IOMMU_DOMAIN_DMA_FQ).
  case dmaFQ
  /// A driver- or user-managed page table (IOMMU_DOMAIN_UNMANAGED / paging).
  case paging
  /// Shares a process address space through a PASID (IOMMU_DOMAIN_SVA).
  case sva
  /// Stage 1 owned by a guest over a stage-2 parent (IOMMU_DOMAIN_NESTED).
  case nested

  public var description: String { rawValue }
  /// Whether map/unmap apply (paging-capable domains).
  public var isPaging: Bool { self == .dma || self == .dmaFQ || self == .paging || self == .nested }
}
