/// A refused SWIOTLB allocation or free. Every refusal is a mapping error the DMA API reports to its
/// caller (Linux returns DMA_MAPPING_ERROR from `swiotlb_tbl_map_single`), never a crash.
public struct SWIOTLBError: Error, Hashable, Sendable, CustomStringConvertible {
  /// Why the pool refused. A closed enum: these are the pool's own outcomes, not wire codes.
  public enum Code: Hashable, Sendable, CustomStringConvertible {
    /// The request is larger than one segment (`swiotlb_max_mapping_size`, 256 KiB).
    case tooLarge
    /// No run of free slots is large enough ("swiotlb buffer is full").
    case full
    /// A free names no live allocation of that size (a double free, a wrong size, a foreign address).
    case notAllocated
    /// A size of zero or less, or a pool size that is not a positive multiple of a segment.
    case invalidSize

    public var description: String {
      switch self {
      case .tooLarge: "too large"
      case .full: "full"
      case .notAllocated: "not allocated"
      case .invalidSize: "invalid size"
      }
    }
  }

  public var code: Code
  /// Linux-like words, naming the sizes and counts involved.
  public var message: String

  public init(_ code: Code, _ message: String) {
    self.code = code
    self.message = message
  }

  public var description: String { "swiotlb \(code): \(message)" }
}

/// The bounce-buffer slot allocator of the guest's software IO TLB (Linux kernel/dma/swiotlb.c).
///
/// A confidential guest cannot let a device DMA into private memory, so the DMA API bounces every
/// streaming mapping through this pool, which lives in shared (decrypted) memory. The pool only keeps
/// the books: which slots are in use. Copying data in and out is the DMA API's job.
///
/// Linux's layout is kept exactly, so that Cove's guest hands out the same addresses a Linux guest
/// would for the same sequence of calls:
/// - slots of IO_TLB_SIZE = 2 KiB (IO_TLB_SHIFT 11);
/// - a mapping is a run of contiguous slots that never crosses an IO_TLB_SEGSIZE = 128-slot segment,
///   so the largest mapping is 256 KiB (`swiotlb_max_mapping_size`);
/// - a mapping of at least a page (4 KiB) starts on a page boundary (`swiotlb_search_pool_area`
///   searches with a stride of two slots then);
/// - the search is next-fit from a rotating index that wraps around (`io_tlb_area.index`).
///
/// Per slot the pool keeps two bytes. `freeRun[i]` is Linux's `io_tlb_slot.list`: the number of free
/// slots from `i` up to the next used slot or the end of `i`'s segment (0 when `i` is used), so "is
/// there a run of n free slots at i" is one comparison and the segment boundary is never crossed.
/// `headSlots[i]` is the slot count of the allocation that starts at `i` (0 elsewhere); Linux keeps
/// `alloc_size` per slot for the same purpose, and trusts it, while here `free` checks it, because a
/// bad free is caller input. Allocation and free touch only the slots of the run, the free slots just
/// before it in its segment, and the slots the search visits; nothing is allocated on the heap after
/// `init`.
///
/// Linux's per-CPU areas, `min_align_mask` (NVMe's offset preservation) and dynamic pools are not
/// modelled: the simulation core is single-threaded (STYLE.md rule 8), so one area is exact.
public final class SWIOTLBPool {
  /// IO_TLB_SIZE: bytes per slot (1 << IO_TLB_SHIFT).
  public static let slotSize = 2048
  /// IO_TLB_SEGSIZE: slots per segment; no mapping crosses a segment boundary.
  public static let segmentSlots = 128
  /// `swiotlb_max_mapping_size()` without a min_align_mask: one whole segment.
  public static let maxMappingSize = 256 * 1024

  /// IO_TLB_SHIFT.
  static let slotShift = 11
  /// PAGE_SIZE of the guest (x86-64): requests this large or larger are page aligned.
  static let pageSize = 4096
  /// PAGE_SHIFT - IO_TLB_SHIFT + 1: the search stride for page-aligned requests, in slots.
  static let pageStride = pageSize / slotSize

  /// Counters for tests and the bench.
  public struct Statistics: Hashable, Sendable {
    /// Successful `allocate` calls.
    public var allocations = 0
    /// Successful `free` calls.
    public var frees = 0
    /// Refused `allocate` calls (too large, full or an invalid size).
    public var failures = 0

    public init(allocations: Int = 0, frees: Int = 0, failures: Int = 0) {
      self.allocations = allocations
      self.frees = frees
      self.failures = failures
    }
  }

  /// The guest-physical address of the first slot (`io_tlb_pool.start`).
  public let base: UInt64
  /// Slots in the pool (`io_tlb_pool.nslabs`), a multiple of `segmentSlots`.
  public let slotCount: Int
  /// Slots currently handed out (`io_tlb_area.used`; debugfs `io_tlb_used`).
  public private(set) var usedSlots = 0
  /// The most slots ever in use at once (debugfs `io_tlb_used_hiwater`).
  public private(set) var highWaterSlots = 0
  public private(set) var statistics = Statistics()

  /// `io_tlb_slot.list`: free slots from here to the next used slot or the segment end (≤ 128).
  /// (The slot arrays are not checked for exclusivity dynamically: the pool is single-threaded,
  /// STYLE.md rule 8, and the per-slot check dominated a bounced map+unmap.)
  @exclusivity(unchecked) private var freeRun: [UInt8]
  /// The slot count of the allocation starting at this slot; 0 if none starts here (≤ 128).
  @exclusivity(unchecked) private var headSlots: [UInt8]
  /// `io_tlb_area.index`: where the next search starts.
  private var searchIndex = 0

  /// - Parameters:
  ///   - base: the page-aligned guest-physical address of the (shared) pool.
  ///   - bytes: the pool size, a positive multiple of 256 KiB (Linux rounds `nslabs` up to a whole
  ///     segment: `ALIGN(nslabs, IO_TLB_SEGSIZE)` in `swiotlb_init_remap`).
  /// - Throws: `.invalidSize` for a size that is not a positive multiple of a segment, or a pool that
  ///   would end past the top of the address space.
  public init(base: UInt64, bytes: Int) throws(SWIOTLBError) {
    precondition(base % UInt64(Self.pageSize) == 0, "swiotlb pool base must be page aligned")
    guard bytes > 0, bytes % Self.maxMappingSize == 0 else {
      throw SWIOTLBError(.invalidSize, "pool of \(bytes) bytes is not a positive multiple of 256 KiB")
    }
    guard !base.addingReportingOverflow(UInt64(bytes)).overflow else {
      throw SWIOTLBError(.invalidSize, "pool of \(bytes) bytes at 0x\(String(base, radix: 16)) overflows")
    }
    self.base = base
    slotCount = bytes / Self.slotSize
    // As swiotlb_init_io_tlb_pool: every slot is free, its run reaching its segment's end.
    freeRun = (0..<slotCount).map { UInt8(Self.segmentSlots - $0 % Self.segmentSlots) }
    headSlots = Array(repeating: 0, count: slotCount)
  }

  /// Bytes the pool covers.
  public var bytes: Int { slotCount * Self.slotSize }

  /// Whether `address` lies inside the pool (Linux `is_swiotlb_buffer`): the DMA API asks this to
  /// know that a DMA address was bounced and must be synced and released here.
  public func contains(_ address: UInt64) -> Bool {
    address >= base && address - base < UInt64(bytes)
  }

  /// Allocates a run of slots for a mapping of `size` bytes (Linux `swiotlb_search_pool_area`).
  /// - Returns: the guest-physical address of the first slot.
  /// - Throws: `.invalidSize` for `size ≤ 0`; `.tooLarge` above `maxMappingSize`; `.full` when no
  ///   run is free. All are mapping errors for the caller.
  public func allocate(size: Int) throws(SWIOTLBError) -> UInt64 {
    guard size > 0 else {
      statistics.failures += 1
      throw SWIOTLBError(.invalidSize, "mapping of \(size) bytes")
    }
    guard size <= Self.maxMappingSize else {
      statistics.failures += 1
      throw SWIOTLBError(
        .tooLarge, "mapping of \(size) bytes exceeds swiotlb_max_mapping_size (\(Self.maxMappingSize) bytes)")
    }
    let slots = Self.slots(for: size)
    guard let index = search(slots: slots, stride: size >= Self.pageSize ? Self.pageStride : 1) else {
      statistics.failures += 1
      // The text of swiotlb_tbl_map_single's warning.
      throw SWIOTLBError(
        .full,
        "swiotlb buffer is full (sz: \(size) bytes), total \(slotCount) (slots), used \(usedSlots) (slots)")
    }
    take(index, slots: slots)
    return base + UInt64(index << Self.slotShift)
  }

  /// Returns the run that `allocate` handed out at `address` (Linux `swiotlb_release_slots`).
  ///
  /// The slot count is what is recorded and checked, so a size that rounds to the same number of
  /// slots is accepted (dma-debug checks the exact byte size of the mapping).
  /// - Throws: `.invalidSize` for `size ≤ 0`; `.notAllocated` if `address` is not the first slot of
  ///   a live allocation of `size`'s slot count. A refused free frees nothing.
  public func free(_ address: UInt64, size: Int) throws(SWIOTLBError) {
    guard size > 0 else { throw SWIOTLBError(.invalidSize, "free of \(size) bytes") }
    var location: String { "0x" + String(address, radix: 16) }
    guard contains(address), (address - base) % UInt64(Self.slotSize) == 0 else {
      throw SWIOTLBError(.notAllocated, "\(location) is not a slot of the pool")
    }
    let index = Int((address - base) >> UInt64(Self.slotShift))
    let recorded = Int(headSlots[index])
    guard recorded != 0 else {
      throw SWIOTLBError(.notAllocated, "\(location) is not the start of a live allocation")
    }
    let slots = size <= Self.maxMappingSize ? Self.slots(for: size) : 0
    guard slots == recorded else {
      throw SWIOTLBError(
        .notAllocated, "\(location) was allocated with \(recorded) slots, freed with \(size) bytes")
    }
    release(index, slots: slots)
  }

  /// nr_slots(): slots covering `size` bytes.
  private static func slots(for size: Int) -> Int {
    (size + slotSize - 1) >> slotShift
  }

  /// The next-fit search of `swiotlb_search_pool_area`: from the rotating index, rounded up to the
  /// stride, look at every stride-th slot once, wrapping to 0 at the end of the pool.
  private func search(slots: Int, stride: Int) -> Int? {
    // The shortcut Linux takes before searching: fewer free slots than asked for.
    guard slots <= slotCount - usedSlots else { return nil }
    // The pool is a whole number of segments and stride divides a segment, so after wrapping to 0
    // the index stays a multiple of the stride.
    var index = (searchIndex + stride - 1) / stride * stride
    if index >= slotCount { index = 0 }
    var checked = 0
    while checked < slotCount {
      if Int(freeRun[index]) >= slots { return index }
      index += stride
      if index >= slotCount { index = 0 }
      checked += stride
    }
    return nil
  }

  /// The `found:` path of `swiotlb_search_pool_area`.
  private func take(_ index: Int, slots: Int) {
    for slot in index..<index + slots { freeRun[slot] = 0 }
    // The free slots just before the run, in the same segment, now end at the run.
    var count: UInt8 = 0
    var slot = index - 1
    while slot >= 0, slot % Self.segmentSlots != Self.segmentSlots - 1, freeRun[slot] != 0 {
      count += 1
      freeRun[slot] = count
      slot -= 1
    }
    headSlots[index] = UInt8(slots)
    searchIndex = index + slots < slotCount ? index + slots : 0
    usedSlots += slots
    highWaterSlots = max(highWaterSlots, usedSlots)
    statistics.allocations += 1
  }

  /// `swiotlb_release_slots`: the run becomes free and merges with the free slots after it (up to
  /// the segment end) and before it (back to the segment start).
  private func release(_ index: Int, slots: Int) {
    let end = index + slots
    let segmentEnd = (index / Self.segmentSlots + 1) * Self.segmentSlots
    var count: UInt8 = end < segmentEnd ? freeRun[end] : 0
    var slot = end - 1
    while slot >= index {
      count += 1
      freeRun[slot] = count
      slot -= 1
    }
    while slot >= 0, slot % Self.segmentSlots != Self.segmentSlots - 1, freeRun[slot] != 0 {
      count += 1
      freeRun[slot] = count
      slot -= 1
    }
    headSlots[index] = 0
    usedSlots -= slots
    statistics.frees += 1
  }
}
