import IOMMU

/// A core whose paging domains use ``ReferenceIOPageTable`` (the page table is not what these tests are about).
func makeCore(_ configuration: IOMMUCore.Configuration = .init()) throws -> IOMMUCore {
  try IOMMUCore(configuration: configuration) { _ throws(IOMMUError) in try ReferenceIOPageTable() }
}
