public import IOMMU
public import PCIe

/// One thing that happened on the platform, as a typed record: what the run's timeline, JSON trace
/// and report are made from (issue 7). Every blocked DMA access is one of these as well as a fault
/// record, and every assignment shows the guest's boundary X.
public enum PlatformEvent: Hashable, Sendable, CustomStringConvertible {
  case guestCreated(GuestID, memoryBytes: UInt64, boundary: UInt64, viommu: Bool)
  /// `boundary` is the X the function's DMA is split at (`UInt64.max`: all private; nil: a vIOMMU).
  case deviceAssigned(RequesterID, GuestID, boundary: UInt64?)
  case pagesConverted(GuestID, gpa: UInt64, pages: Int, toShared: Bool)
  case conversionRefused(GuestID, gpa: UInt64, errno: Errno)
  case dmaBlocked(PlatformDMAFault)
  case interrupt(RequesterID, GuestID, vector: UInt16)
  /// The guest is gone and the VMM took everything of it back (``VMM/destroyGuest(_:)``).
  case guestDestroyed(GuestID, GuestTeardown)

  public var description: String {
    func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }
    switch self {
    case .guestCreated(let guest, let bytes, let boundary, let viommu):
      return
        "\(guest) created: \(bytes >> 20) MiB, \(viommu ? "vIOMMU" : "boundary X = \(boundary == .max ? "all private" : hex(boundary))")"
    case .deviceAssigned(let function, let guest, let boundary):
      let split = boundary.map { $0 == .max ? "all private" : "X = \(hex($0))" } ?? "vIOMMU"
      return "\(function) assigned to \(guest) (\(split))"
    case .pagesConverted(let guest, let gpa, let pages, let toShared):
      return "\(guest) converted \(pages) page(s) at GPA \(hex(gpa)) to \(toShared ? "shared" : "private")"
    case .conversionRefused(let guest, let gpa, let errno):
      return "\(guest) conversion at GPA \(hex(gpa)) refused: \(errno)"
    case .dmaBlocked(let fault): return "DMA blocked: \(fault)"
    case .interrupt(let function, let guest, let vector):
      return "MSI-X \(vector) from \(function) to \(guest)"
    case .guestDestroyed(_, let teardown): return teardown.description
    }
  }
}
