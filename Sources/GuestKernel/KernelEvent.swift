public import IOMMU
public import PCIe
public import TDISP

/// Something the guest kernel did or saw, as one typed record (issue 7's timeline and trace are made
/// of these and the host's events).
public enum KernelEvent: Hashable, Sendable, CustomStringConvertible {
  case driverBound(RequesterID, driver: String)
  case driverUnbound(RequesterID, driver: String, reason: String)
  case probeFailed(RequesterID, driver: String, errno: Errno)
  case probeDeferred(RequesterID, driver: String)
  case trustChanged(RequesterID, from: DeviceTrust, to: DeviceTrust)
  /// The host or the device changed the TDI's state without the guest asking.
  case trustRevoked(RequesterID, tdi: TDIState, reason: String)
  case interrupt(RequesterID, vector: UInt16)
  case dmaDebug(DMADebugReport)
  case memoryLeaked(gpa: UInt64, pages: Int, reason: String)
  /// An assigned function did not answer enumeration and was skipped.
  case functionAbsent(RequesterID, reason: String)

  public var description: String {
    switch self {
    case .driverBound(let function, let driver): "\(driver) bound to \(function)"
    case .driverUnbound(let function, let driver, let reason):
      "\(driver) unbound from \(function) (\(reason))"
    case .probeFailed(let function, let driver, let errno): "\(driver) probe of \(function) failed: \(errno)"
    case .probeDeferred(let function, let driver): "\(driver) probe of \(function) deferred"
    case .trustChanged(let function, let from, let to): "\(function) trust \(from) → \(to)"
    case .trustRevoked(let function, let state, let reason):
      "\(function) trust revoked: TDI \(state) (\(reason))"
    case .interrupt(let function, let vector): "MSI-X \(vector) from \(function)"
    case .dmaDebug(let report): "DMA-API: \(report)"
    case .memoryLeaked(let gpa, let pages, let reason): "\(pages) page(s) at \(hex(gpa)) leaked: \(reason)"
    case .functionAbsent(let function, let reason): "\(function) skipped: \(reason)"
    }
  }
}
