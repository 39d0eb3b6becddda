/// The IOVA allocator of a DMA-API domain: hands out size-aligned blocks of I/O virtual address space,
/// top-down, below a caller's limit — what Linux's drivers/iommu/iova.c does with
/// `alloc_iova(..., size_aligned = true)` and its per-CPU `iova_rcache` in front.
///
/// Why not Linux's red-black tree: iova.c keeps one rbtree node (~40 B plus slab overhead) per live
/// allocation. Cove's budget for all per-mapping bookkeeping is 24 B (the page table takes ~16 B), so
/// this allocator keeps no per-allocation object. The address space is a sparse radix of "chunks";
/// each chunk is an implicit binary segment tree whose nodes hold the order (+1) of the largest free
/// size-aligned block below them, exactly the summary a top-down size-aligned search needs (the same
/// idea as a buddy allocator's "longest free" array). Subtrees that are wholly free or wholly
/// reserved are not materialised at all, so a 48-bit aperture costs nothing until it is used.
///
/// Per granule the leaf chunks hold one byte (segment-tree leaf) and two bits: the *head* bit marks the
/// first granule of every live allocation, so `free` can check that it is given exactly a block that was
/// handed out (Linux's `free_iova` would find the rbtree node; a bad pointer there is a kernel bug, here
/// it is caller input and is refused with EINVAL), and the *cached* bit marks blocks that sit in a
/// magazine, so a double free is caught too. About 2.3 B per granule in use: see `memoryFootprint`.
///
/// Size classes up to 2^5 granules are cached in magazines (IOVA_RANGE_CACHE_MAX_SIZE = 6 in iova.c):
/// see IOVAAllocator+Magazines.swift. Cached IOVAs stay allocated in the tree until flushed back.
///
/// Single-threaded like the rest of the simulation core (STYLE.md rule 8): Linux's per-CPU rcache
/// becomes one "CPU" with a loaded and a previous magazine per size class, plus a shared depot.
public final class IOVAAllocator {
  /// Not checked for exclusivity dynamically: the allocator is single-threaded (STYLE.md rule 8) and no
  /// method re-enters another, so the check would only add its cost to every allocate/free.
  @exclusivity(unchecked) var state: IOVAAllocatorState

  /// Counters for tests and the bench.
  public struct Statistics: Sendable, Hashable {
    /// Successful `allocate` calls.
    public var allocations = 0
    /// Successful `free` calls.
    public var frees = 0
    /// `allocate` calls served by a magazine without touching the tree.
    public var cacheHits = 0
    /// Cacheable `allocate` calls that had to search the tree.
    public var cacheMisses = 0
    /// `free` calls that ended in a magazine.
    public var cachedFrees = 0
    /// Times every magazine was flushed back to the tree (explicitly, or because a search failed).
    public var cacheFlushes = 0
    /// `allocate` calls that found nothing (after the retry with flushed caches).
    public var failures = 0
  }

  /// - Parameters:
  ///   - granule: allocation unit, a power of two ≥ 512 (Linux `init_iova_domain` requires a power of
  ///     two no larger than the CPU page; Cove accepts any power of two from 512 B).
  ///   - start: first allocatable IOVA, rounded up to the granule. Linux never hands out IOVA 0 (the
  ///     DMA layer passes at least one page, as dma-iommu's `base_pfn = max(1, ...)` does).
  ///   - end: end of the allocatable space, exclusive, rounded down to the granule.
  /// - Throws: EINVAL for a granule that is not a power of two, or an empty space.
  public init(granule: UInt64 = 4096, start: IOVA, end: IOVA) throws(IOMMUError) {
    state = try IOVAAllocatorState(granule: granule, start: start, end: end)
  }

  /// The allocation unit in bytes (Linux's `iovad->granule`).
  public var granule: UInt64 { state.granule }
  /// The first IOVA that may be handed out.
  public var start: IOVA { state.start }
  /// The first IOVA past the allocatable space (exclusive).
  public var end: IOVA { state.end }
  /// Live allocations (handed out and not freed; cached IOVAs are not live but stay allocated).
  public var liveAllocations: Int { state.liveCount }
  public var statistics: Statistics { state.counters }
  /// IOVAs sitting in magazines (allocated in the tree, not live).
  public var cachedCount: Int { state.cachedCount }
  /// The reserved ranges, merged, in bytes.
  public var reservedRanges: [Range<IOVA>] { state.reservedRanges }
  /// Bytes held by the allocator's own structures (array capacities), for the memory budget.
  public var memoryFootprint: Int { state.memoryFootprint }

  /// Reserves `range` so that it is never handed out (Linux `reserve_iova`; dma-iommu reserves the MSI
  /// doorbell window 0xFEE00000–0xFEEFFFFF and PCI host-bridge windows this way). Partial granules are
  /// reserved whole. Parts outside [start, end) are already unavailable and are accepted.
  /// - Throws: EINVAL for an empty range; EBUSY if part of it is currently allocated (after flushing
  ///   the magazines).
  public func reserve(_ range: Range<IOVA>) throws(IOMMUError) { try state.reserve(range) }

  /// Allocates `size` bytes rounded up to a power-of-two number of granules, aligned to that size, as
  /// high as possible with the whole block below `limit` (exclusive) — Linux `alloc_iova_fast` with
  /// `size_aligned`. Small sizes come from the magazines first (most recently freed first, as the
  /// rcache does); if the tree has no room, the magazines are flushed and the search retried once
  /// (`alloc_iova_fast(..., flush_rcache = true)`).
  /// - Returns: the block's first IOVA, or nil when no block fits (the caller's ENOMEM/ENOSPC); also
  ///   nil for a zero size.
  public func allocate(size: UInt64, limit: IOVA) -> IOVA? { state.allocate(size: size, limit: limit) }

  /// Frees a block handed out by `allocate` with the same size (Linux `free_iova_fast`). Small blocks go
  /// to a magazine and stay allocated in the tree until the magazines are flushed.
  /// - Throws: EINVAL if `(iova, size)` is not exactly a live allocation (never allocated, already
  ///   freed or cached, wrong size, misaligned, reserved or out of range). Nothing changes then.
  public func free(_ iova: IOVA, size: UInt64) throws(IOMMUError) { try state.free(iova, size: size) }

  /// Whether `(iova, size)` is exactly one live allocation — what `free` would accept.
  public func isAllocated(_ iova: IOVA, size: UInt64) -> Bool { state.isAllocatedInPlace(iova, size: size) }

  /// The number of bytes a block of `size` really occupies (power-of-two granules), or nil if `size`
  /// is zero or larger than the space.
  public func allocationSize(for size: UInt64) -> UInt64? { state.allocationSizeInPlace(for: size) }

  /// Returns every cached block to the tree (Linux `free_cpu_cached_iovas` + `free_global_cached_iovas`).
  public func flushCaches() { state.flushCaches() }

  /// `free` without its validation, for a caller that has just checked `isAllocated(iova, size:)` (or
  /// the DMA layer's flush queue, whose entries were checked when queued) and changed nothing in the
  /// allocator since: the check is what costs in `free`, and it would find the same answer.
  func freeChecked(_ iova: IOVA, size: UInt64) { state.freeChecked(iova, size: size) }
}

/// All of `IOVAAllocator`'s state and logic, as a struct driven through `mutating` methods: the class
/// below holds it in one stored property, so one call costs one dynamic exclusivity check
/// instead of one per touched property (the swift-nio pattern of a class wrapping a state struct).
struct IOVAAllocatorState {
  /// The allocation unit in bytes (a power of two; Linux's `iovad->granule`, the smallest IOMMU page).
  let granule: UInt64
  /// The first IOVA that may be handed out.
  let start: IOVA
  /// The first IOVA past the allocatable space (exclusive).
  let end: IOVA

  let granuleShift: UInt64
  let startGranule: UInt64
  let endGranule: UInt64
  /// log2 of the number of granules the radix covers: [0, 2^totalBits) ⊇ [start, end).
  let totalBits: Int

  /// The free/used summaries and head/cached bits (IOVAAllocator+Tree.swift).
  var radix: IOVARadix

  /// Reserved granule ranges, sorted and merged (Linux `reserve_iova`). Kept apart from the tree so
  /// that `free` can refuse a range that was never handed out even though the tree says "in use".
  var reservedGranules: [Range<UInt64>] = []

  /// Magazines per size class (IOVAAllocator+Magazines.swift).
  var rcaches: [SizeClassCache] = []

  /// Live allocations (handed out and not freed; cached IOVAs are not live but stay allocated).
  var liveCount = 0
  var counters = IOVAAllocator.Statistics()

  /// - Parameters:
  ///   - granule: allocation unit, a power of two ≥ 512 (Linux `init_iova_domain` requires a power of
  ///     two no larger than the CPU page; Cove accepts any power of two from 512 B).
  ///   - start: first allocatable IOVA, rounded up to the granule. Linux never hands out IOVA 0 (the
  ///     DMA layer passes `max(1 page, aperture start)`, as dma-iommu's `iova_reserve_...` does).
  ///   - end: end of the allocatable space, exclusive, rounded down to the granule.
  /// - Throws: EINVAL for a granule that is not a power of two, or an empty space.
  init(granule: UInt64 = 4096, start: IOVA, end: IOVA) throws(IOMMUError) {
    guard granule >= 512, granule & (granule - 1) == 0 else {
      throw IOMMUError(.EINVAL, "IOVA granule \(granule) is not a power of two ≥ 512")
    }
    self.granule = granule
    let shift = UInt64(granule.trailingZeroBitCount)
    self.granuleShift = shift
    let startG = (start.rawValue >> shift) + (start.rawValue & (granule - 1) == 0 ? 0 : 1)
    let endG = end.rawValue >> shift
    guard startG < endG else {
      throw IOMMUError(.EINVAL, "IOVA space [\(start), \(end)) holds no whole granule")
    }
    self.startGranule = startG
    self.endGranule = endG
    self.start = IOVA(startG << shift)
    self.end = IOVA(endG << shift)
    var bits = 1
    while bits < 64 && (UInt64(1) << UInt64(bits)) < endG { bits += 1 }
    self.totalBits = bits
    radix = IOVARadix(totalBits: bits)
    // Everything outside [start, end) is permanently in use, as if reserved.
    if startG > 0 { radix.mark(0, startG, used: true, collapse: true) }
    let coverEnd = UInt64(1) << UInt64(totalBits)
    if endG < coverEnd { radix.mark(endG, coverEnd, used: true, collapse: true) }
    rcaches = (0...IOVAAllocator.maxCachedOrder).map { _ in SizeClassCache() }
  }

  // MARK: - Public API

  /// Reserves `range` so that it is never handed out (Linux `reserve_iova`; dma-iommu reserves the MSI
  /// doorbell window 0xFEE00000–0xFEEFFFFF and PCI host-bridge windows this way). Partial granules are
  /// reserved whole. Parts outside [start, end) are already unavailable and are accepted.
  /// - Throws: EINVAL for an empty range; EBUSY if part of it is currently allocated.
  mutating func reserve(_ range: Range<IOVA>) throws(IOMMUError) {
    guard !range.isEmpty else { throw IOMMUError(.EINVAL, "empty reserved range") }
    let lo = range.lowerBound.rawValue >> granuleShift
    let upper = range.upperBound.rawValue
    let hi = (upper >> granuleShift) + (upper & (granule - 1) == 0 ? 0 : 1)
    let clampedLo = max(lo, startGranule)
    let clampedHi = min(hi, endGranule)
    if clampedLo < clampedHi {
      if !gapsAreFree(clampedLo, clampedHi) {
        // Cached blocks count as allocated; give them back and look again before refusing.
        flushCaches()
        guard gapsAreFree(clampedLo, clampedHi) else {
          throw IOMMUError(.EBUSY, "reserved range \(range) overlaps a live IOVA allocation")
        }
      }
      radix.mark(clampedLo, clampedHi, used: true, collapse: true)
    }
    insertReserved(lo..<hi)
  }

  /// The reserved ranges, merged, in bytes.
  var reservedRanges: [Range<IOVA>] {
    reservedGranules.map { IOVA($0.lowerBound << granuleShift)..<IOVA($0.upperBound << granuleShift) }
  }

  /// Allocates `size` bytes rounded up to a power-of-two number of granules, aligned to that size, as
  /// high as possible with the whole block below `limit` (exclusive) — Linux `alloc_iova_fast` with
  /// `size_aligned`. Small sizes come from the magazines first (most recently freed first, as the
  /// rcache does); if the tree has no room, the magazines are flushed and the search retried once
  /// (`alloc_iova_fast(..., flush_rcache = true)`).
  /// - Returns: the block's first IOVA, or nil when no block fits (the caller's ENOMEM/ENOSPC); also
  ///   nil for a zero size.
  mutating func allocate(size: UInt64, limit: IOVA) -> IOVA? {
    guard let order = order(forSize: size) else { return nil }
    let limitG = min(limit.rawValue >> granuleShift, endGranule)
    if order <= IOVAAllocator.maxCachedOrder {
      if let g = cachePop(order: order, limitGranule: limitG) {
        counters.cacheHits += 1
        counters.allocations += 1
        liveCount += 1
        return IOVA(g << granuleShift)
      }
      counters.cacheMisses += 1
    }
    var found = radix.searchTree(order: order, limitGranule: limitG)
    if found == nil && hasCachedBlocks {
      flushCaches()
      found = radix.searchTree(order: order, limitGranule: limitG)
    }
    guard let g = found else {
      counters.failures += 1
      return nil
    }
    radix.mark(g, g + (1 << UInt64(order)), used: true, collapse: false)
    radix.setHead(g, true)
    counters.allocations += 1
    liveCount += 1
    return IOVA(g << granuleShift)
  }

  /// Frees a block handed out by `allocate` with the same size (Linux `free_iova_fast`). Small blocks go
  /// to a magazine and stay allocated in the tree until the magazines are flushed.
  /// - Throws: EINVAL if `(iova, size)` is not exactly a live allocation (never allocated, already
  ///   freed, wrong size, misaligned, reserved or out of range). Nothing changes then.
  mutating func free(_ iova: IOVA, size: UInt64) throws(IOMMUError) {
    guard let order = order(forSize: size) else {
      throw IOMMUError(.EINVAL, "free of \(iova) with invalid size \(size)")
    }
    guard let g = liveBlockGranule(iova, order: order) else {
      throw IOMMUError(.EINVAL, "free of \(iova) size 0x\(String(size, radix: 16)): not a live allocation")
    }
    liveCount -= 1
    counters.frees += 1
    if order <= IOVAAllocator.maxCachedOrder {
      cachePush(g, order: order)
      counters.cachedFrees += 1
    } else {
      releaseToTree(g, order: order)
    }
  }

  /// See `IOVAAllocator.freeChecked`.
  mutating func freeChecked(_ iova: IOVA, size: UInt64) {
    guard let order = order(forSize: size) else { preconditionFailure("freeChecked with size \(size)") }
    let g = iova.rawValue >> granuleShift
    liveCount -= 1
    counters.frees += 1
    if order <= IOVAAllocator.maxCachedOrder {
      cachePush(g, order: order)
      counters.cachedFrees += 1
    } else {
      releaseToTree(g, order: order)
    }
  }

  /// `isAllocated` and `allocationSize` for the class: `mutating` only so that the call works on the
  /// class's stored state in place — a non-mutating call on a class's struct property copies the whole
  /// struct (and retains its arrays) first, which cost more than the check itself.
  ///
  /// The same holds for every helper a mutating method calls: a call to a non-mutating method of this
  /// (large) struct passes a copy of it, so the helpers on the map/unmap path are `mutating` or
  /// always inlined, and the others read only the scalars they need.
  mutating func isAllocatedInPlace(_ iova: IOVA, size: UInt64) -> Bool {
    guard let order = order(forSize: size) else { return false }
    return liveBlockGranule(iova, order: order) != nil
  }
  @inline(__always)
  mutating func allocationSizeInPlace(for size: UInt64) -> UInt64? {
    guard let order = order(forSize: size) else { return nil }
    return (UInt64(1) << UInt64(order)) << granuleShift
  }

  /// Whether `(iova, size)` is exactly one live allocation — what `free` would accept.
  mutating func isAllocated(_ iova: IOVA, size: UInt64) -> Bool { isAllocatedInPlace(iova, size: size) }

  /// The number of bytes a block of `size` really occupies (power-of-two granules), or nil if `size`
  /// is zero or larger than the space.
  func allocationSize(for size: UInt64) -> UInt64? {
    guard let order = order(forSize: size) else { return nil }
    return (UInt64(1) << UInt64(order)) << granuleShift
  }

  /// Bytes held by the allocator's own structures (array capacities), for the memory budget.
  var memoryFootprint: Int {
    var bytes = radix.memoryFootprint + reservedGranules.capacity * 16
    for cache in rcaches { bytes += cache.memoryFootprint }
    return bytes
  }

  // MARK: - Sizes and validation

  /// log2 of the power-of-two granule count that holds `size` bytes; nil for 0 or too large.
  @inline(__always)
  func order(forSize size: UInt64) -> Int? {
    guard size > 0 else { return nil }
    let granules = (size >> granuleShift) + (size & (granule - 1) == 0 ? 0 : 1)
    let order = granules <= 1 ? 0 : 64 - (granules - 1).leadingZeroBitCount
    return order <= totalBits ? order : nil
  }

  /// The first granule of the live allocation `(iova, 2^order granules)`, or nil if it is not one.
  /// (`mutating` only so that it reads the state in place: see `isAllocatedInPlace`.)
  mutating func liveBlockGranule(_ iova: IOVA, order: Int) -> UInt64? {
    let count = UInt64(1) << UInt64(order)
    guard iova.rawValue & (granule - 1) == 0 else { return nil }
    let g = iova.rawValue >> granuleShift
    guard g & (count - 1) == 0, g >= startGranule, g < endGranule, endGranule - g >= count else {
      return nil
    }
    if order == 0 { return liveSingleGranule(g) }
    guard !overlapsReserved(g, g + count) else { return nil }
    let head = radix.granuleInfo(g)
    guard head.used, head.head, !head.cached else { return nil }
    var i: UInt64 = 1
    while i < count {
      let info = radix.granuleInfo(g + i)
      guard info.used, !info.head else { return nil }
      i += 1
    }
    // The block must end where the allocation ends: the next granule is free, the head of another
    // block, reserved, or outside the space.
    let next = g + count
    if next < endGranule && !overlapsReserved(next, next + 1) {
      let info = radix.granuleInfo(next)
      if info.used && !info.head { return nil }
    }
    return g
  }

  /// `liveBlockGranule` for one granule `g` inside the space (the usual 4 KiB DMA mapping): one radix
  /// walk serves `g` and, inside the same chunk, the granule after it. A head bit means an allocation,
  /// which a reserved granule never is, so the reserved ranges are consulted only for a used non-head
  /// successor — the case the general check needs them for.
  @inline(__always)
  mutating func liveSingleGranule(_ g: UInt64) -> UInt64? {
    let node = radix.leafNode(g)
    guard node >= 0 else { return nil }
    let head = radix.granuleInfo(g, inLeaf: node)
    guard head.used, head.head, !head.cached else { return nil }
    let next = g + 1
    guard next < endGranule else { return g }
    let slotMask = (UInt64(1) << UInt64(IOVARadix.chunkBits)) - 1
    let info: (used: Bool, head: Bool, cached: Bool)
    if next & slotMask != 0 && radix.levelBits[0] == IOVARadix.chunkBits {
      info = radix.granuleInfo(next, inLeaf: node)
    } else {
      info = radix.granuleInfo(next)
    }
    if info.used && !info.head && !overlapsReserved(next, next + 1) { return nil }
    return g
  }

  /// Puts a block back into the tree (not into a magazine).
  mutating func releaseToTree(_ g: UInt64, order: Int) {
    radix.setHead(g, false)
    radix.setCached(g, false)
    radix.mark(g, g + (1 << UInt64(order)), used: false, collapse: true)
  }

  // MARK: - Reserved ranges

  func overlapsReserved(_ lo: UInt64, _ hi: UInt64) -> Bool {
    // First reserved range whose end is above lo.
    var low = 0
    var high = reservedGranules.count
    while low < high {
      let mid = (low + high) / 2
      if reservedGranules[mid].upperBound <= lo { low = mid + 1 } else { high = mid }
    }
    return low < reservedGranules.count && reservedGranules[low].lowerBound < hi
  }

  private mutating func insertReserved(_ range: Range<UInt64>) {
    var merged = range
    var kept: [Range<UInt64>] = []
    kept.reserveCapacity(reservedGranules.count + 1)
    for existing in reservedGranules {
      if existing.upperBound < merged.lowerBound || existing.lowerBound > merged.upperBound {
        kept.append(existing)
      } else {
        merged = min(existing.lowerBound, merged.lowerBound)..<max(existing.upperBound, merged.upperBound)
      }
    }
    kept.append(merged)
    kept.sort { $0.lowerBound < $1.lowerBound }
    reservedGranules = kept
  }

  /// Whether every granule of [lo, hi) not already reserved is free in the tree.
  private func gapsAreFree(_ lo: UInt64, _ hi: UInt64) -> Bool {
    var cursor = lo
    for r in reservedGranules where r.upperBound > cursor && r.lowerBound < hi {
      if r.lowerBound > cursor && !radix.rangeIsFree(cursor, r.lowerBound) { return false }
      cursor = max(cursor, r.upperBound)
    }
    return cursor >= hi || radix.rangeIsFree(cursor, hi)
  }
}
