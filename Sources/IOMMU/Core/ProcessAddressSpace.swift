/// A CPU virtual address in a process address space. Under SVA a device puts these on the bus with
/// the process's PASID, so translation turns an IOVA into one of these (SEMANTICS.md §4).
public struct VirtualAddress: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
  public var rawValue: UInt64
  public init(rawValue: UInt64) { self.rawValue = rawValue }
  public init(_ value: UInt64) { self.rawValue = value }
  public static func < (lhs: VirtualAddress, rhs: VirtualAddress) -> Bool { lhs.rawValue < rhs.rawValue }
  public var description: String { "va 0x" + String(rawValue, radix: 16) }
  /// The 4 KiB page holding this address.
  public var pageBase: VirtualAddress { VirtualAddress(rawValue & ~(PageSize.size4K.bytes - 1)) }
}

/// One CPU page-table entry of a process address space.
public struct CPUPageEntry: Hashable, Sendable {
  public var frame: PhysicalAddress
  public var writable: Bool
  public init(frame: PhysicalAddress, writable: Bool) {
    self.frame = frame
    self.writable = writable
  }
}

/// What changed in a process address space, for the secondary-TLB notifier (Linux mmu_notifier:
/// arch_invalidate_secondary_tlbs on change, release on exit).
public enum AddressSpaceEvent: Hashable, Sendable {
  /// Existing entries in [start, start + size) were removed or changed: cached translations must go.
  case invalidated(start: VirtualAddress, size: UInt64)
  /// The process exited: its pages are gone and devices must stop using them.
  case exited
}

/// A process's CPU page tables (an `mm` in Linux), shared with devices through SVA (SEMANTICS.md §4).
///
/// A map of 4 KiB virtual pages to frames. Removing or downgrading an entry notifies the IOMMU cores
/// that bound it so they invalidate what devices may have cached; adding an entry for an absent page
/// needs no invalidation (nothing can be cached for it). `exit()` ends the address space: its PASID
/// stays attached but translation is blocked until unbind.
public final class ProcessAddressSpace {
  public let id: AddressSpaceID
  public private(set) var isAlive = true
  private var pages: [UInt64: CPUPageEntry] = [:]
  private var observers: [ObjectIdentifier: (ProcessAddressSpace, AddressSpaceEvent) -> Void] = [:]

  /// Called by an IO page fault (page request) for an address that is not mapped or lacks the right;
  /// it may populate the page, as handle_mm_fault would (iommu_sva_handle_mm). Tests provide it.
  public var pageFaultHandler: ((ProcessAddressSpace, VirtualAddress, IOAccess) -> Void)?

  public init(id: AddressSpaceID) { self.id = id }

  /// Number of mapped 4 KiB pages.
  public var mappedPages: Int { pages.count }

  /// Maps the 4 KiB page at `virtual` to `frame`. EINVAL if either is misaligned or the process
  /// exited. Replacing an entry notifies an invalidation of that page.
  public func map(_ virtual: VirtualAddress, to frame: PhysicalAddress, writable: Bool) throws(IOMMUError) {
    let mask = PageSize.size4K.bytes - 1
    guard virtual.rawValue & mask == 0, frame.rawValue & mask == 0 else {
      throw IOMMUError(.EINVAL, "\(virtual) → \(frame) is not 4 KiB aligned")
    }
    guard isAlive else { throw IOMMUError(.EINVAL, "address space \(id) has exited") }
    let previous = pages.updateValue(CPUPageEntry(frame: frame, writable: writable), forKey: virtual.rawValue)
    if previous != nil {
      notify(.invalidated(start: virtual, size: PageSize.size4K.bytes))
    }
  }

  /// Removes the pages in [virtual, virtual + size), rounded out to 4 KiB pages; one invalidation
  /// notification covers the range if anything was mapped. Returns the number of pages removed.
  @discardableResult
  public func unmap(_ virtual: VirtualAddress, size: UInt64) -> Int {
    let (start, end) = pageRange(virtual, size)
    var removed = 0
    var page = start
    while page < end {
      if pages.removeValue(forKey: page) != nil { removed += 1 }
      page += PageSize.size4K.bytes
    }
    if removed > 0 { notify(.invalidated(start: VirtualAddress(start), size: end - start)) }
    return removed
  }

  /// Makes the mapped pages in [virtual, virtual + size) read-only (mprotect); notifies an
  /// invalidation if any page lost its write right.
  public func writeProtect(_ virtual: VirtualAddress, size: UInt64) {
    let (start, end) = pageRange(virtual, size)
    var changed = false
    var page = start
    while page < end {
      if var entry = pages[page], entry.writable {
        entry.writable = false
        pages[page] = entry
        changed = true
      }
      page += PageSize.size4K.bytes
    }
    if changed { notify(.invalidated(start: VirtualAddress(start), size: end - start)) }
  }

  /// The entry for the page holding `virtual`, or nil. An exited process has no pages.
  public func lookup(_ virtual: VirtualAddress) -> CPUPageEntry? {
    isAlive ? pages[virtual.pageBase.rawValue] : nil
  }

  /// The process exits (exit_mmap → mmu_notifier release). Idempotent.
  public func exit() {
    guard isAlive else { return }
    isAlive = false
    pages.removeAll()
    notify(.exited)
  }

  func addObserver(
    _ token: ObjectIdentifier, _ observer: @escaping (ProcessAddressSpace, AddressSpaceEvent) -> Void
  ) {
    observers[token] = observer
  }

  func removeObserver(_ token: ObjectIdentifier) { observers[token] = nil }

  private func notify(_ event: AddressSpaceEvent) {
    for observer in observers.values { observer(self, event) }
  }

  /// [start, end) rounded out to 4 KiB pages, saturating at the top of the address space.
  private func pageRange(_ virtual: VirtualAddress, _ size: UInt64) -> (UInt64, UInt64) {
    let mask = PageSize.size4K.bytes - 1
    let start = virtual.rawValue & ~mask
    let (last, overflow) = virtual.rawValue.addingReportingOverflow(size)
    if overflow { return (start, UInt64.max & ~mask) }
    let (rounded, overflowRounding) = last.addingReportingOverflow(mask)
    return (start, overflowRounding ? UInt64.max & ~mask : rounded & ~mask)
  }
}
