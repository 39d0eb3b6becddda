/// Emulated physical memory that holds I/O page-table pages: the host memory the IOMMU hardware model
/// reads its second-level tables from (SEMANTICS.md §2), and the table memory of every paging domain.
///
/// The pages form one contiguous emulated physical window `[base, base + maxPages × 4 KiB)`. They are
/// stored as one growing `ContiguousArray<UInt64>` indexed by page number, so a table page costs its
/// 4 KiB and nothing more: no per-page object, no per-entry bookkeeping. That is what keeps a live 4 KiB
/// mapping near 8 bytes (its entry in a level-1 table). Freed pages go on a free list and are handed out
/// again before the window grows (like the page allocator Linux's io-pgtable code takes its table pages
/// from, drivers/iommu/io-pgtable-arm.c `__arm_lpae_alloc_pages`).
///
/// A page table is the only client that touches entries, so an access outside an allocated page is an
/// internal bug, not caller input: it is a precondition failure (STYLE.md rule 5).
public final class TablePagePool: IOTableMemory {
  /// Bytes per table page: 512 entries of 8 bytes (VT-d second-level and x86-64 paging structures).
  public static let pageBytes: UInt64 = 4096
  /// 64-bit entries per table page.
  public static let entriesPerPage = 512

  /// The physical address of page number 0.
  public let base: PhysicalAddress
  /// The most pages this pool hands out at once; `allocateTablePage` returns nil (ENOMEM) beyond it.
  public let maxPages: Int
  /// Pages currently handed out.
  @exclusivity(unchecked) public private(set) var allocatedPages: Int = 0

  /// The page contents, page `n` at words `[n × 512, (n + 1) × 512)`. Exclusivity is not checked
  /// dynamically: the pool is single-threaded (STYLE.md rule 8) and every access is a plain load or
  /// store that never overlaps a mutation in progress, so the check would only cost the page walk time.
  @exclusivity(unchecked) private var words: ContiguousArray<UInt64> = []
  /// One bit per page of the window that exists: set while the page is handed out.
  @exclusivity(unchecked) private var allocatedBitmap: ContiguousArray<UInt64> = []
  /// Per page of the window: the number of present entries (R or W set) in the low 16 bits and of
  /// non-zero entries in the high 16 bits, kept up to date by every store. A page table asks "is this
  /// table empty now?" after each unmap; the count answers in one load instead of a 512-entry scan, and
  /// a page freed with no non-zero word needs no zeroing. 4 bytes per 4 KiB page.
  @exclusivity(unchecked) private var entryCounts: ContiguousArray<UInt32> = []
  /// Page numbers freed and not yet handed out again (last freed is reused first: it is the warmest).
  @exclusivity(unchecked) private var freePageNumbers: [Int] = []

  /// A pool of at most `maxPages` table pages starting at the 4 KiB-aligned `base`.
  ///
  /// - Throws: EINVAL when `base` is not 4 KiB aligned, `maxPages` is negative, or the window would
  ///   leave the 52-bit physical address space an entry can point at (bits 51:12 of an entry,
  ///   `RadixPageTableEntry.addressMask`).
  public init(base: PhysicalAddress = PhysicalAddress(0x1_0000_0000), maxPages: Int) throws(IOMMUError) {
    guard base.rawValue % Self.pageBytes == 0 else {
      throw IOMMUError(.EINVAL, "table pool base \(base) is not 4 KiB aligned")
    }
    guard maxPages >= 0 else {
      throw IOMMUError(.EINVAL, "table pool size \(maxPages) pages is negative")
    }
    let limit = RadixPageTableEntry.outputAddressLimit
    guard base.rawValue < limit, UInt64(maxPages) <= (limit - base.rawValue) / Self.pageBytes else {
      throw IOMMUError(.EINVAL, "table pool of \(maxPages) pages at \(base) leaves the 52-bit address space")
    }
    self.base = base
    self.maxPages = maxPages
  }

  /// Bytes of table pages currently handed out.
  public var bytesInUse: Int { allocatedPages * Int(Self.pageBytes) }

  /// Bytes the pool's storage occupies in the emulator's own memory (page contents including grown but
  /// unused capacity, the allocation bitmap and the free list): what a memory benchmark should count.
  public var storageBytes: Int {
    words.capacity * 8 + allocatedBitmap.capacity * 8 + freePageNumbers.capacity * 8 + entryCounts.capacity
      * 4
  }

  /// The addresses of the pages currently handed out, ascending (for dumps and tests).
  public var allocatedPageAddresses: [PhysicalAddress] {
    var result: [PhysicalAddress] = []
    result.reserveCapacity(allocatedPages)
    for pageNumber in 0..<pageCount where isAllocated(pageNumber) {
      result.append(address(ofPage: pageNumber))
    }
    return result
  }

  public func allocateTablePage() -> PhysicalAddress? {
    let pageNumber: Int
    if let reused = freePageNumbers.popLast() {
      pageNumber = reused  // zeroed when it was freed
    } else {
      guard pageCount < maxPages else { return nil }
      pageNumber = pageCount
      grow(toPages: pageCount + 1)
    }
    allocatedBitmap[pageNumber >> 6] |= 1 << UInt64(pageNumber & 63)
    allocatedPages += 1
    return address(ofPage: pageNumber)
  }

  public func freeTablePage(_ page: PhysicalAddress) {
    let pageNumber = checkedPageNumber(page.rawValue)
    precondition(page.rawValue % Self.pageBytes == 0, "freeing \(page), which is not a page address")
    if entryCounts[pageNumber] != 0 {  // a page whose words are all zero already needs no clearing
      let first = pageNumber * Self.entriesPerPage
      words.withUnsafeMutableBufferPointer { buffer in
        UnsafeMutableBufferPointer(rebasing: buffer[first..<(first + Self.entriesPerPage)]).update(
          repeating: 0)
      }
      entryCounts[pageNumber] = 0
    }
    allocatedBitmap[pageNumber >> 6] &= ~(1 << UInt64(pageNumber & 63))
    allocatedPages -= 1
    freePageNumbers.append(pageNumber)
  }

  public func loadEntry(_ address: PhysicalAddress) -> UInt64 {
    words[checkedWordIndex(address.rawValue)]
  }

  public func storeEntry(_ value: UInt64, at address: PhysicalAddress) {
    store(value, atWord: checkedWordIndex(address.rawValue))
  }

  /// Stores one word and keeps its page's entry counts.
  @inline(__always)
  private func store(_ value: UInt64, atWord index: Int) {
    let old = words[index]
    words[index] = value
    let rw = RadixPageTableEntry.readBit | RadixPageTableEntry.writeBit
    let present = Int32(value & rw != 0 ? 1 : 0) &- Int32(old & rw != 0 ? 1 : 0)
    let nonzero = Int32(value != 0 ? 1 : 0) &- Int32(old != 0 ? 1 : 0)
    if present | nonzero != 0 {
      let page = index &>> 9
      entryCounts[page] &+= UInt32(bitPattern: present &+ (nonzero &<< 16))
    }
  }

  /// The entry at an address a page table of this pool wrote itself (the fast path of its own walks):
  /// only the array's bounds check, no allocation check. Never used on tables someone else wrote.
  @inline(__always)
  func loadOwnEntry(_ address: UInt64) -> UInt64 {
    words[Int(truncatingIfNeeded: (address &- base.rawValue) >> 3)]
  }

  /// Whether the page at `page`, one of this pool's table pages, has an entry with R or W set
  /// (`RadixPageTableEntry.isPresent`): one load of the page's present-entry count.
  @inline(__always)
  func hasPresentEntry(inPage page: UInt64) -> Bool {
    let pageNumber = Int(truncatingIfNeeded: (page &- base.rawValue) >> 12)
    return entryCounts[pageNumber] & 0xFFFF != 0
  }

  @inline(__always)
  func storeOwnEntry(_ value: UInt64, at address: UInt64) {
    store(value, atWord: Int(truncatingIfNeeded: (address &- base.rawValue) >> 3))
  }

  // MARK: - Layout

  /// Pages that exist in the window (allocated or free).
  private var pageCount: Int { words.count / Self.entriesPerPage }

  private func address(ofPage pageNumber: Int) -> PhysicalAddress {
    base.advanced(by: UInt64(pageNumber) * Self.pageBytes)
  }

  private func isAllocated(_ pageNumber: Int) -> Bool {
    allocatedBitmap[pageNumber >> 6] & (1 << UInt64(pageNumber & 63)) != 0
  }

  private func checkedPageNumber(_ address: UInt64) -> Int {
    precondition(address >= base.rawValue, "table access at 0x\(String(address, radix: 16)) below the pool")
    let pageNumber = (address - base.rawValue) / Self.pageBytes
    precondition(
      pageNumber < UInt64(pageCount) && isAllocated(Int(pageNumber)),
      "table access at 0x\(String(address, radix: 16)) outside an allocated table page")
    return Int(pageNumber)
  }

  private func checkedWordIndex(_ address: UInt64) -> Int {
    precondition(
      address % 8 == 0, "table entry address 0x\(String(address, radix: 16)) is not 8-byte aligned")
    _ = checkedPageNumber(address)
    return Int((address - base.rawValue) >> 3)
  }

  /// Grows the window by about a quarter at a time rather than doubling: the page contents dominate the
  /// emulator's memory at a million mappings, and a quarter keeps growth amortised O(1) while wasting
  /// at most 25 % capacity.
  private func grow(toPages pages: Int) {
    let neededWords = pages * Self.entriesPerPage
    if neededWords > words.capacity {
      let grown = words.capacity + max(words.capacity / 4, 16 * Self.entriesPerPage)
      words.reserveCapacity(min(max(grown, neededWords), maxPages * Self.entriesPerPage))
    }
    words.append(contentsOf: repeatElement(0, count: neededWords - words.count))
    if entryCounts.count < pages {
      if pages > entryCounts.capacity {
        entryCounts.reserveCapacity(min(max(entryCounts.capacity * 5 / 4, pages, 64), max(maxPages, pages)))
      }
      entryCounts.append(contentsOf: repeatElement(0, count: pages - entryCounts.count))
    }
    let neededBitmapWords = (pages + 63) / 64
    if allocatedBitmap.count < neededBitmapWords {
      allocatedBitmap.append(contentsOf: repeatElement(0, count: neededBitmapWords - allocatedBitmap.count))
    }
  }
}
