public import IOMMU

/// How a DMA request may touch memory, decided by the IOMMU model from the TLP (SEMANTICS.md §5).
public enum DMAAccess: Hashable, Sendable {
  /// A T=1 request from a TDI the checks accepted: the guest's pages, private or shared, in plaintext.
  case trusted(GuestID)
  /// A T=0 request: only the guest's shared pages.
  case sharedOnly(GuestID)
}

/// A memory-level refusal of a DMA access: why, and the first page (4 KiB aligned) it hit.
public struct DMAMemoryRefusal: Hashable, Sendable {
  public var reason: DMAFaultReason
  public var page: PhysicalAddress
}

/// The DMA side of platform memory: every 4 KiB page a request touches must belong to the device's
/// guest, a T=0 request may touch only shared pages, and a trusted read needs intact integrity. Every
/// page is checked before any byte moves; a refusal moves nothing and names its page.
extension PlatformMemory {
  /// The first page of [address, address + count) that `access` may not read (or write), or nil.
  public func dmaCheck(_ address: PhysicalAddress, count: Int, _ access: DMAAccess, reading: Bool)
    -> DMAMemoryRefusal?
  {
    guard count > 0 else { return nil }
    let pageSize = UInt64(Self.pageSize)
    let firstPage = address.rawValue / pageSize * pageSize
    let (end, overflow) = address.rawValue.addingReportingOverflow(UInt64(count) - 1)
    guard !overflow else { return DMAMemoryRefusal(reason: .notMapped, page: PhysicalAddress(firstPage)) }
    var page = firstPage
    while page <= end {
      let at = PhysicalAddress(page)
      guard let info = self.page(at: at) else { return DMAMemoryRefusal(reason: .notMapped, page: at) }
      switch access {
      case .sharedOnly(let guest):
        guard info.owner == guest else { return DMAMemoryRefusal(reason: .notOwner, page: at) }
        guard info.state == .shared else { return DMAMemoryRefusal(reason: .tZeroToPrivate, page: at) }
      case .trusted(let guest):
        guard info.owner == guest else { return DMAMemoryRefusal(reason: .notOwner, page: at) }
        // A read, or a write that leaves part of the page, needs the page's integrity intact.
        let whole = page >= address.rawValue && page + pageSize - 1 <= end
        if info.poisoned && (reading || !whole) { return DMAMemoryRefusal(reason: .integrity, page: at) }
      }
      page += pageSize
    }
    return nil
  }

  public func dmaRead(
    _ address: PhysicalAddress, into buffer: UnsafeMutableRawBufferPointer, as access: DMAAccess
  )
    -> DMAMemoryRefusal?
  {
    if let refusal = dmaCheck(address, count: buffer.count, access, reading: true) { return refusal }
    do { try read(address, into: buffer, as: accessor(access)) } catch {
      return Self.refusal(error, at: address)
    }
    return nil
  }

  public func dmaWrite(_ address: PhysicalAddress, from buffer: UnsafeRawBufferPointer, as access: DMAAccess)
    -> DMAMemoryRefusal?
  {
    if let refusal = dmaCheck(address, count: buffer.count, access, reading: false) { return refusal }
    do { try write(buffer, at: address, as: accessor(access)) } catch {
      return Self.refusal(error, at: address)
    }
    return nil
  }

  /// A copy of `count` bytes, both sides checked first. The caller checks sides separately when it
  /// needs to know which one refused; this only moves bytes that passed.
  public func dmaCopy(
    from source: PhysicalAddress, as reader: DMAAccess, to destination: PhysicalAddress, as writer: DMAAccess,
    count: Int
  ) -> DMAMemoryRefusal? {
    if let refusal = dmaCheck(source, count: count, reader, reading: true) { return refusal }
    if let refusal = dmaCheck(destination, count: count, writer, reading: false) { return refusal }
    do {
      try copy(count, from: source, as: accessor(reader), to: destination, as: accessor(writer))
    } catch {
      return Self.refusal(error, at: destination)
    }
    return nil
  }

  private func accessor(_ access: DMAAccess) -> Accessor {
    switch access {
    case .trusted(let guest): .owner(guest)
    // Shared pages read and write in plaintext for anyone; the check confined it to them.
    case .sharedOnly: .untrusted
    }
  }

  static func refusal(_ error: MemoryError, at address: PhysicalAddress) -> DMAMemoryRefusal {
    switch error.reason {
    case .notOwner(let page, _): DMAMemoryRefusal(reason: .notOwner, page: page)
    case .integrityFailure(let page): DMAMemoryRefusal(reason: .integrity, page: page)
    default: DMAMemoryRefusal(reason: .notMapped, page: address)
    }
  }
}
