/// A bounded cache of translations, tagged by (domain, PASID) — the IOMMU's IOTLB as Linux's IOMMU
/// core sees it: entries are per leaf (4 KiB, 2 MiB or 1 GiB), filled by a page walk after a miss, and
/// removed only by explicit invalidation (`iommu_iotlb_sync`, `flush_iotlb_all`, PASID-selective
/// invalidation) or by eviction when full. A stale entry keeps translating until it is invalidated,
/// which is exactly why strict DMA unmap must sync before the IOVA is reused (SEMANTICS.md §2).
///
/// Why this layout: the hit path is benchmarked against a plain open-addressing hash table, so the
/// cache *is* one — a preallocated power-of-two array of 24-byte slots at load ≤ 1/2, linear probing,
/// Fibonacci hashing of (page number, tag), backward-shift deletion (no tombstones, so probe chains
/// never grow). No allocation, existential or dictionary on `lookup`. A lookup probes the 4 KiB page
/// base first, then 2 MiB, then 1 GiB — but only sizes with at least one live entry, so a cache of
/// 4 KiB leaves costs one probe sequence.
///
/// Eviction is random (deterministic xorshift) among occupied slots: no referenced bit has to be
/// written on a hit.
public final class IOTLB {
  /// Most entries held at once.
  public let capacity: Int

  struct Slot {
    /// 0 = empty; else (domain << 32) | (pasid << 8) | (protection << 3) | (size code << 1) | 1.
    /// The protection rides in the tag so a slot is 24 bytes; key comparisons mask it out.
    var tagAndProtection: UInt64
    /// IOVA of the leaf's first byte.
    var iovaBase: UInt64
    /// Output address of the leaf's first byte.
    var physicalBase: UInt64
    static let empty = Slot(tagAndProtection: 0, iovaBase: 0, physicalBase: 0)
    static let protectionMask: UInt64 = 0b111 << 3
    @inline(__always) var tag: UInt64 { tagAndProtection & ~Slot.protectionMask }
    @inline(__always) var protection: UInt8 { UInt8(truncatingIfNeeded: (tagAndProtection >> 3) & 0b111) }
  }

  private var slots: ContiguousArray<Slot>
  /// Survivors of a full-table invalidation, preallocated so invalidation does not allocate either.
  private var scratch: ContiguousArray<Slot>
  let slotMask: Int
  let hashShift: UInt64
  private var sizeCounts: (Int, Int, Int) = (0, 0, 0)
  private var randomState: UInt64 = 0x2545_F491_4F6C_DD1D

  // Counters are stored privately behind public getters: a `public` stored property of a class keeps
  // its dynamic exclusivity check on every `+= 1`, which would show on the hit path.
  private var storedCount = 0
  private var storedHits = 0
  private var storedMisses = 0
  private var storedInsertions = 0
  private var storedEvictions = 0
  private var storedInvalidations = 0
  private var storedInvalidatedEntries = 0

  /// Entries held.
  public var count: Int { storedCount }
  public var hits: Int { storedHits }
  public var misses: Int { storedMisses }
  public var insertions: Int { storedInsertions }
  public var evictions: Int { storedEvictions }
  /// Invalidation requests (any kind).
  public var invalidations: Int { storedInvalidations }
  /// Entries removed by invalidation.
  public var invalidatedEntries: Int { storedInvalidatedEntries }

  /// - Parameter capacity: entries held before eviction; clamped to 1...2^24 (a model, not a memory hog).
  public init(capacity: Int) {
    let wanted = min(max(capacity, 1), 1 << 24)
    self.capacity = wanted
    var tableBits = 1
    while (1 << tableBits) < 2 * wanted { tableBits += 1 }
    slots = ContiguousArray(repeating: .empty, count: 1 << tableBits)
    scratch = []
    scratch.reserveCapacity(wanted)
    slotMask = (1 << tableBits) - 1
    hashShift = UInt64(64 - tableBits)
  }

  // MARK: - Keys

  @inline(__always)
  static func sizeCode(_ size: PageSize) -> UInt64 {
    switch size {
    case .size4K: 0
    case .size2M: 1
    case .size1G: 2
    }
  }

  @inline(__always)
  static func pageSize(code: UInt64) -> PageSize {
    code == 0 ? .size4K : (code == 1 ? .size2M : .size1G)
  }

  @inline(__always)
  static func tag(domain: DomainID, pasid: PASID, sizeCode: UInt64) -> UInt64 {
    (UInt64(domain.rawValue) << 32) | (UInt64(pasid.rawValue & (PASID.limit - 1)) << 8) | (sizeCode << 1) | 1
  }

  @inline(__always)
  func home(tag: UInt64, iovaBase: UInt64) -> Int {
    let mixed = (iovaBase >> 12) ^ (tag &* 0xFF51_AFD7_ED55_8CCD)
    return Int(truncatingIfNeeded: (mixed &* 0x9E37_79B9_7F4A_7C15) >> hashShift)
  }

  @inline(__always)
  func find(tag: UInt64, iovaBase: UInt64) -> Int? {
    var index = home(tag: tag, iovaBase: iovaBase)
    while true {
      let slot = slots[index]
      if slot.tag == tag && slot.iovaBase == iovaBase { return index }
      if slot.tag == 0 { return nil }
      index = (index + 1) & slotMask
    }
  }

  // MARK: - Lookup and fill

  /// The cached translation of `iova` for (domain, pasid), or nil on a miss.
  public func lookup(domain: DomainID, pasid: PASID, iova: IOVA) -> IOTranslation? {
    let address = iova.rawValue
    guard pasid.rawValue < PASID.limit else {
      storedMisses += 1
      return nil
    }
    if sizeCounts.0 > 0, let hit = probe(domain, pasid, address, code: 0, mask: PageSize.size4K.bytes - 1) {
      return hit
    }
    if sizeCounts.1 > 0, let hit = probe(domain, pasid, address, code: 1, mask: PageSize.size2M.bytes - 1) {
      return hit
    }
    if sizeCounts.2 > 0, let hit = probe(domain, pasid, address, code: 2, mask: PageSize.size1G.bytes - 1) {
      return hit
    }
    storedMisses += 1
    return nil
  }

  @inline(__always)
  private func probe(_ domain: DomainID, _ pasid: PASID, _ address: UInt64, code: UInt64, mask: UInt64)
    -> IOTranslation?
  {
    let base = address & ~mask
    guard let index = find(tag: Self.tag(domain: domain, pasid: pasid, sizeCode: code), iovaBase: base) else {
      return nil
    }
    storedHits += 1
    let slot = slots[index]
    return IOTranslation(
      physical: PhysicalAddress(slot.physicalBase &+ (address & mask)),
      protection: IOProtection(rawValue: slot.protection), pageSize: Self.pageSize(code: code))
  }

  /// Caches the leaf that translated `iova` (`translation.physical` is `iova`'s output address; the
  /// leaf is `translation.pageSize`). Replaces an entry for the same leaf; evicts one when full.
  /// A PASID beyond 20 bits cannot be on the wire and is not cached (returns false).
  @discardableResult
  public func insert(domain: DomainID, pasid: PASID, iova: IOVA, translation: IOTranslation) -> Bool {
    guard pasid.rawValue < PASID.limit else { return false }
    let code = Self.sizeCode(translation.pageSize)
    let mask = translation.pageSize.bytes - 1
    let base = iova.rawValue & ~mask
    let tag = Self.tag(domain: domain, pasid: pasid, sizeCode: code)
    let entry = Slot(
      tagAndProtection: tag | (UInt64(translation.protection.rawValue & 0b111) << 3), iovaBase: base,
      physicalBase: translation.physical.rawValue &- (iova.rawValue & mask))
    storedInsertions += 1
    if let index = find(tag: tag, iovaBase: base) {
      slots[index] = entry
      return true
    }
    if storedCount >= capacity { evictOne() }
    place(entry)
    return true
  }

  private func place(_ entry: Slot) {
    var index = home(tag: entry.tag, iovaBase: entry.iovaBase)
    while slots[index].tag != 0 { index = (index + 1) & slotMask }
    slots[index] = entry
    storedCount += 1
    adjustSizeCount(entry.tag, by: 1)
  }

  @inline(__always)
  private func adjustSizeCount(_ tag: UInt64, by delta: Int) {
    switch (tag >> 1) & 3 {
    case 0: sizeCounts.0 += delta
    case 1: sizeCounts.1 += delta
    default: sizeCounts.2 += delta
    }
  }

  private func evictOne() {
    randomState ^= randomState << 13
    randomState ^= randomState >> 7
    randomState ^= randomState << 17
    var index = Int(truncatingIfNeeded: randomState) & slotMask
    while slots[index].tag == 0 { index = (index + 1) & slotMask }
    remove(at: index)
    storedEvictions += 1
  }

  /// Backward-shift deletion: later members of the probe chain move into the hole so lookups never
  /// need tombstones.
  private func remove(at index: Int) {
    adjustSizeCount(slots[index].tag, by: -1)
    storedCount -= 1
    var hole = index
    var next = index
    while true {
      next = (next + 1) & slotMask
      let slot = slots[next]
      if slot.tag == 0 { break }
      let ideal = home(tag: slot.tag, iovaBase: slot.iovaBase)
      // Move when the slot's home is not cyclically within (hole, next].
      let distanceToNext = (next - ideal) & slotMask
      let distanceToHole = (hole - ideal) & slotMask
      if distanceToHole < distanceToNext {
        slots[hole] = slot
        hole = next
      }
    }
    slots[hole] = .empty
  }

  /// Live entries whose leaf is `size`.
  public func entries(of size: PageSize) -> Int {
    switch size {
    case .size4K: sizeCounts.0
    case .size2M: sizeCounts.1
    case .size1G: sizeCounts.2
    }
  }

  // MARK: - Invalidation

  /// Invalidates every leaf of `domain` (and of `pasid`, if given; all PASIDs of the domain otherwise)
  /// that overlaps `range` — the range-based flush behind `iommu_iotlb_sync`. A small range with a
  /// PASID is removed leaf by leaf; otherwise the table is swept.
  public func invalidate(domain: DomainID, pasid: PASID?, range: Range<IOVA>) {
    storedInvalidations += 1
    guard !range.isEmpty else { return }
    let lo = range.lowerBound.rawValue
    let hi = range.upperBound.rawValue
    if let pasid, pasid.rawValue < PASID.limit {
      var candidates: UInt64 = 0
      for size in PageSize.allCases where entries(of: size) > 0 {
        candidates += ((hi - 1) / size.bytes) - (lo / size.bytes) + 1
      }
      if candidates <= 64 {
        for size in PageSize.allCases where entries(of: size) > 0 {
          let tag = Self.tag(domain: domain, pasid: pasid, sizeCode: Self.sizeCode(size))
          var base = lo & ~(size.bytes - 1)
          while base < hi {
            if let index = find(tag: tag, iovaBase: base) {
              remove(at: index)
              storedInvalidatedEntries += 1
            }
            let (nextBase, overflow) = base.addingReportingOverflow(size.bytes)
            if overflow { break }
            base = nextBase
          }
        }
        return
      }
    }
    sweep { slot in
      guard slot.tag >> 32 == UInt64(domain.rawValue) else { return false }
      if let pasid, (slot.tag >> 8) & UInt64(PASID.limit - 1) != UInt64(pasid.rawValue) { return false }
      let size = Self.pageSize(code: (slot.tag >> 1) & 3).bytes
      return slot.iovaBase < hi && slot.iovaBase &+ size > lo
    }
  }

  /// Invalidates every entry of (domain, pasid) — PASID-selective invalidation.
  public func invalidate(domain: DomainID, pasid: PASID) {
    storedInvalidations += 1
    let wanted = Self.tag(domain: domain, pasid: pasid, sizeCode: 0) & ~UInt64(0b110)
    sweep { slot in slot.tag & ~UInt64(0b110) == wanted }
  }

  /// Invalidates every entry of `domain`, all PASIDs (`flush_iotlb_all`).
  public func invalidate(domain: DomainID) {
    storedInvalidations += 1
    sweep { slot in slot.tag >> 32 == UInt64(domain.rawValue) }
  }

  /// Invalidates everything (a global invalidation).
  public func invalidateAll() {
    storedInvalidations += 1
    storedInvalidatedEntries += count
    for index in slots.indices { slots[index] = .empty }
    storedCount = 0
    sizeCounts = (0, 0, 0)
  }

  /// Removes every entry `matches` selects, then re-places the survivors so probe chains stay intact.
  private func sweep(_ matches: (Slot) -> Bool) {
    guard count > 0 else { return }
    scratch.removeAll(keepingCapacity: true)
    var removed = 0
    for index in slots.indices where slots[index].tag != 0 {
      if matches(slots[index]) {
        removed += 1
      } else {
        scratch.append(slots[index])
      }
    }
    guard removed > 0 else { return }
    for index in slots.indices { slots[index] = .empty }
    storedCount = 0
    sizeCounts = (0, 0, 0)
    for slot in scratch { place(slot) }
    storedInvalidatedEntries += removed
  }
}
