public import IOMMU

/// How a DMA request may touch memory, decided by the IOMMU model from the TLP (SEMANTICS.md §5).
public enum DMAAccess: Hashable, Sendable {
  /// A T=1 request from a TDI the checks accepted: the guest's pages, private or shared, in plaintext.
  case trusted(GuestID)
  /// A T=0 request: only the guest's shared pages.
  case sharedOnly(GuestID)
}

/// The DMA side of platform memory: every 4 KiB page a request touches must belong to the device's
/// guest, and a T=0 request may touch only shared pages; a refusal moves nothing.
extension PlatformMemory {
  public func dmaRead(
    _ address: PhysicalAddress, into buffer: UnsafeMutableRawBufferPointer, as access: DMAAccess
  )
    -> DMAFaultReason?
  {
    if let refusal = dmaCheck(address, count: buffer.count, access, reading: true) { return refusal }
    do { try read(address, into: buffer, as: accessor(access)) } catch { return Self.reason(error) }
    return nil
  }

  public func dmaWrite(_ address: PhysicalAddress, from buffer: UnsafeRawBufferPointer, as access: DMAAccess)
    -> DMAFaultReason?
  {
    if let refusal = dmaCheck(address, count: buffer.count, access, reading: false) { return refusal }
    do { try write(buffer, at: address, as: accessor(access)) } catch { return Self.reason(error) }
    return nil
  }

  /// A copy; a refusal says which side it was (`source` true: the read) and the page it hit.
  public func dmaCopy(
    from source: PhysicalAddress, as reader: DMAAccess, to destination: PhysicalAddress, as writer: DMAAccess,
    count: Int
  ) -> (reason: DMAFaultReason, source: Bool, page: PhysicalAddress?)? {
    if let refusal = dmaCheck(source, count: count, reader, reading: true) { return (refusal, true, nil) }
    if let refusal = dmaCheck(destination, count: count, writer, reading: false) {
      return (refusal, false, nil)
    }
    do {
      try copy(count, from: source, as: accessor(reader), to: destination, as: accessor(writer))
    } catch {
      let page: PhysicalAddress?
      switch error.reason {
      case .notOwner(let at, _), .integrityFailure(let at): page = at
      default: page = nil
      }
      let inSource =
        page.map { $0.rawValue >= source.rawValue && $0.rawValue - source.rawValue < UInt64(count) } ?? true
      return (Self.reason(error), inSource, page)
    }
    return nil
  }

  private func accessor(_ access: DMAAccess) -> Accessor {
    switch access {
    case .trusted(let guest): .owner(guest)
    // Shared pages read and write in plaintext for anyone; the check above confined it to them.
    case .sharedOnly: .untrusted
    }
  }

  /// The T=0 rule and guest isolation, page by page.
  private func dmaCheck(_ address: PhysicalAddress, count: Int, _ access: DMAAccess, reading: Bool)
    -> DMAFaultReason?
  {
    guard count > 0 else { return nil }
    guard case .sharedOnly(let guest) = access else { return nil }
    let pageSize = UInt64(Self.pageSize)
    let first = address.rawValue / pageSize
    let (end, overflow) = address.rawValue.addingReportingOverflow(UInt64(count) - 1)
    guard !overflow else { return .notMapped }
    for number in first...(end / pageSize) {
      guard let page = page(at: PhysicalAddress(number * pageSize)) else { return .notMapped }
      guard page.owner == guest else { return .notOwner }
      guard page.state == .shared else { return .tZeroToPrivate }
    }
    return nil
  }

  static func reason(_ error: MemoryError) -> DMAFaultReason {
    switch error.reason {
    case .notOwner: .notOwner
    case .integrityFailure: .integrity
    default: .notMapped
    }
  }
}
