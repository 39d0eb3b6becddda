public import IOMMU

/// A guest user process: its address space (the IOMMU core's `ProcessAddressSpace`, what SVA shares
/// with devices, SEMANTICS.md §4) and the memory behind it. Pages are either populated at mmap or
/// reserved and populated on first touch — by the CPU or by a device's IO page fault — as
/// handle_mm_fault does.
public final class GuestProcess {
  public let addressSpace: ProcessAddressSpace
  unowned let kernel: GuestKernel
  /// Mapped or reserved virtual pages: their frame once populated, and whether they are shared.
  private var pages: [UInt64: (frame: UInt64?, shared: Bool, writable: Bool)] = [:]
  private var nextVirtual: UInt64 = 0x4000_0000

  init(kernel: GuestKernel, id: AddressSpaceID) {
    self.kernel = kernel
    addressSpace = ProcessAddressSpace(id: id)
    addressSpace.pageFaultHandler = { [unowned self] _, virtual, _ in try? populate(virtual.pageBase.rawValue)
    }
  }

  /// mmap of `pages` anonymous pages. `populate` (MAP_POPULATE) allocates them now; otherwise the
  /// first touch does. `shared` pages are converted to shared memory when populated, for a device
  /// that is not accepted (it can reach only shared memory).
  public func mmap(pages count: Int, writable: Bool = true, populate: Bool = true, shared: Bool = false)
    throws(KernelError) -> VirtualAddress
  {
    guard count > 0, addressSpace.isAlive else { throw KernelError(.EINVAL, "mmap of \(count) pages") }
    let start = nextVirtual
    nextVirtual += UInt64(count + 1) * 4096  // a guard page between mappings
    for index in 0..<count { pages[start + UInt64(index) * 4096] = (nil, shared, writable) }
    if populate {
      for index in 0..<count { try self.populate(start + UInt64(index) * 4096) }
    }
    return VirtualAddress(start)
  }

  /// munmap: the pages leave the address space (devices' cached translations are invalidated
  /// through the IOMMU core) and their memory goes back to the kernel.
  public func munmap(_ virtual: VirtualAddress, pages count: Int) {
    addressSpace.unmap(virtual, size: UInt64(count) * 4096)
    for index in 0..<count { release(virtual.rawValue + UInt64(index) * 4096) }
  }

  /// The process exits: devices stop translating its addresses until unbound; its memory is freed.
  public func exit() {
    addressSpace.exit()
    // In address order: the pages go back (and their conversions are logged) the same way every run.
    for page in pages.keys.sorted() { release(page) }
  }

  /// The CPU writing the process's memory (faulting pages in).
  public func write(_ virtual: VirtualAddress, bytes: [UInt8]) throws(KernelError) {
    var done = 0
    while done < bytes.count {
      let address = virtual.rawValue + UInt64(done)
      let length = min(bytes.count - done, 4096 - Int(address & 0xFFF))
      let frame = try frame(of: address)
      try kernel.memory.write(frame + (address & 0xFFF), bytes: Array(bytes[done..<(done + length)]))
      done += length
    }
  }

  /// The CPU reading the process's memory (faulting pages in).
  public func read(_ virtual: VirtualAddress, count: Int) throws(KernelError) -> [UInt8] {
    var out: [UInt8] = []
    while out.count < count {
      let address = virtual.rawValue + UInt64(out.count)
      let length = min(count - out.count, 4096 - Int(address & 0xFFF))
      out += try kernel.memory.read(try frame(of: address) + (address & 0xFFF), count: length)
    }
    return out
  }

  /// Pages with memory behind them now.
  public var populatedPages: Int { pages.values.filter { $0.frame != nil }.count }

  private func frame(of address: UInt64) throws(KernelError) -> UInt64 {
    let page = address & ~0xFFF
    try populate(page)
    guard let frame = pages[page]?.frame else { throw KernelError(.EFAULT, "no page at \(hex(address))") }
    return frame
  }

  private func populate(_ page: UInt64) throws(KernelError) {
    guard let entry = pages[page] else { throw KernelError(.EFAULT, "\(hex(page)) is not mapped") }
    guard entry.frame == nil else { return }
    let frame = try kernel.memory.allocatePages(1)
    do throws(KernelError) {
      // A refused conversion leaves the frame lost (counted by the memory); releasePages keeps it out.
      if entry.shared { try kernel.memory.setMemoryDecrypted(frame, pages: 1) }
      do throws(IOMMUError) {
        try addressSpace.map(VirtualAddress(page), to: PhysicalAddress(frame), writable: entry.writable)
      } catch { throw KernelError(error.errno, "\(error)") }
    } catch {
      kernel.memory.releasePages(frame, count: 1)
      throw error
    }
    pages[page]?.frame = frame
    kernel.processPagePopulated(self, page: page, frame: frame, writable: entry.writable)
  }

  /// The populated pages: virtual page, frame, writable.
  var populated: [(page: UInt64, frame: UInt64, writable: Bool)] {
    pages.compactMap { page, entry in entry.frame.map { (page, $0, entry.writable) } }
  }

  private func release(_ page: UInt64) {
    guard let entry = pages.removeValue(forKey: page), let frame = entry.frame else { return }
    if entry.shared {
      do throws(KernelError) { try kernel.memory.setMemoryEncrypted(frame, pages: 1) } catch { return }
    }
    kernel.memory.freePages(frame, count: 1)
  }
}
