/// The IOVA range caches ("magazines") in front of the tree, after Linux's `iova_rcache`
/// (drivers/iommu/iova.c, from Bonwick's magazine allocator): per size class a *loaded* and a
/// *previous* magazine of recently freed blocks, and a depot of full magazines. The common
/// free-then-allocate pair of a streaming DMA mapping is a push and a pop; the tree is touched only to
/// flip the block's cached bit. Cached blocks stay allocated in the tree until flushed back.
extension IOVAAllocator {
  /// Orders 0...5 are cached: IOVA_RANGE_CACHE_MAX_SIZE = 6 size classes in iova.c.
  public static let maxCachedOrder = 5
  /// IOVAs per magazine: IOVA_MAG_SIZE in iova.c (127, so a magazine is 1 KiB there).
  public static let magazineSize = 127
  /// Full magazines kept in the depot per size class: MAX_GLOBAL_MAGS in iova.c.
  public static let maxDepotMagazines = 32
}

extension IOVAAllocatorState {
  struct SizeClassCache {
    var loaded = ContiguousArray<UInt64>()
    var previous = ContiguousArray<UInt64>()
    var depot: [ContiguousArray<UInt64>] = []
    /// Empty magazines kept for reuse so that rotation does not allocate.
    var spare: [ContiguousArray<UInt64>] = []

    mutating func swapLoadedAndPrevious() { swap(&loaded, &previous) }

    var count: Int { loaded.count + previous.count + depot.reduce(0) { $0 + $1.count } }
    var memoryFootprint: Int {
      (loaded.capacity + previous.capacity) * 8 + depot.reduce(0) { $0 + $1.capacity * 8 + 16 }
        + spare.reduce(0) { $0 + $1.capacity * 8 + 16 }
    }
  }

  /// IOVAs sitting in magazines (allocated in the tree, not live).
  var cachedCount: Int { rcaches.reduce(0) { $0 + $1.count } }

  var hasCachedBlocks: Bool {
    rcaches.contains { !$0.loaded.isEmpty || !$0.previous.isEmpty || !$0.depot.isEmpty }
  }

  /// See `IOVAAllocator.flushCaches`.
  mutating func flushCaches() {
    guard hasCachedBlocks else { return }
    counters.cacheFlushes += 1
    for order in rcaches.indices {
      var cache = rcaches[order]
      rcaches[order] = SizeClassCache()
      for g in cache.loaded { releaseToTree(g, order: order) }
      for g in cache.previous { releaseToTree(g, order: order) }
      for magazine in cache.depot {
        for g in magazine { releaseToTree(g, order: order) }
      }
      cache.loaded.removeAll(keepingCapacity: true)
      cache.previous.removeAll(keepingCapacity: true)
      for var magazine in cache.depot {
        magazine.removeAll(keepingCapacity: true)
        cache.spare.append(magazine)
      }
      cache.depot.removeAll(keepingCapacity: true)
      rcaches[order] = cache
    }
  }

  /// `iova_rcache_insert`: loaded if it has room; else swap with previous if that has room; else the
  /// loaded magazine goes to the depot (or, with the depot full, back to the tree) and an empty one
  /// is loaded.
  mutating func cachePush(_ g: UInt64, order: Int) {
    radix.setCached(g, true)
    if rcaches[order].loaded.count >= IOVAAllocator.magazineSize {
      if rcaches[order].previous.count < IOVAAllocator.magazineSize {
        rcaches[order].swapLoadedAndPrevious()
      } else {
        var fresh = rcaches[order].spare.popLast() ?? ContiguousArray()
        fresh.reserveCapacity(IOVAAllocator.magazineSize)
        swap(&fresh, &rcaches[order].loaded)
        if rcaches[order].depot.count < IOVAAllocator.maxDepotMagazines {
          rcaches[order].depot.append(fresh)
        } else {
          for cached in fresh { releaseToTree(cached, order: order) }
          fresh.removeAll(keepingCapacity: true)
          rcaches[order].spare.append(fresh)
        }
      }
    }
    if rcaches[order].loaded.capacity == 0 {
      rcaches[order].loaded.reserveCapacity(IOVAAllocator.magazineSize)
    }
    rcaches[order].loaded.append(g)
  }

  /// `iova_rcache_get`: pop from loaded; else swap in previous; else take a full magazine from the
  /// depot. Like `iova_magazine_pop`, the loaded magazine is searched from the top for a block that
  /// ends at or below the limit.
  mutating func cachePop(order: Int, limitGranule: UInt64) -> UInt64? {
    if rcaches[order].loaded.isEmpty {
      if !rcaches[order].previous.isEmpty {
        rcaches[order].swapLoadedAndPrevious()
      } else if var full = rcaches[order].depot.popLast() {
        swap(&full, &rcaches[order].loaded)
        rcaches[order].spare.append(full)
      } else {
        return nil
      }
    }
    let size = UInt64(1) << UInt64(order)
    var index = rcaches[order].loaded.count - 1
    while index >= 0 {
      let g = rcaches[order].loaded[index]
      if g + size <= limitGranule {
        let last = rcaches[order].loaded.removeLast()
        if index < rcaches[order].loaded.count { rcaches[order].loaded[index] = last }
        radix.setCached(g, false)
        return g
      }
      index -= 1
    }
    return nil
  }
}
