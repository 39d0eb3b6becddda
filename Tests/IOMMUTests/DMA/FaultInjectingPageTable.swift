import IOMMU

/// ``ReferenceIOPageTable`` with counters and a one-shot injected map failure, so the DMA layer's
/// error paths (no IOVA leaked when the page table refuses) can be exercised.
final class FaultInjectingPageTable: IOPageTableProtocol {
  private let reference: ReferenceIOPageTable
  var failNextMap: IOMMUError?
  private(set) var mapCalls = 0
  private(set) var unmapCalls = 0

  init() {
    // ReferenceIOPageTable only refuses widths other than 39/48 bits.
    reference = try! ReferenceIOPageTable(inputAddressBits: 48)
  }

  var mappedBytes: UInt64 { reference.mappedBytes }

  func map(_ iova: IOVA, to physical: PhysicalAddress, size: UInt64, protection: IOProtection)
    throws(IOMMUError)
  {
    mapCalls += 1
    if let failure = failNextMap {
      failNextMap = nil
      throw failure
    }
    try reference.map(iova, to: physical, size: size, protection: protection)
  }

  func unmap(_ iova: IOVA, size: UInt64) throws(IOMMUError) -> UInt64 {
    unmapCalls += 1
    return try reference.unmap(iova, size: size)
  }

  func translate(_ iova: IOVA) -> IOTranslation? { reference.translate(iova) }
}
