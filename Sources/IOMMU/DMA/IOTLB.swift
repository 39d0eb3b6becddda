/// A bounded cache of translations, tagged by (domain, PASID) — the IOMMU's IOTLB as Linux's IOMMU
/// core sees it: entries are per leaf (4 KiB, 2 MiB or 1 GiB), filled by a page walk after a miss, and
/// removed only by explicit invalidation (`iommu_iotlb_sync`, `flush_iotlb_all`, PASID-selective
/// invalidation) or by eviction when full. A stale entry keeps translating until it is invalidated,
/// which is exactly why strict DMA unmap must sync before the IOVA is reused (SEMANTICS.md §2).
///
/// Why this layout: the hit path is benchmarked against a plain open-addressing hash table, so the
/// cache *is* one — a preallocated power-of-two array of slots at load ≤ 1/2, linear probing,
/// Fibonacci hashing of (page number, tag), backward-shift deletion (no tombstones, so probe chains
/// never grow). No allocation, existential or dictionary on `lookup`. A lookup probes the 4 KiB page
/// base first, then 2 MiB, then 1 GiB — but only sizes with at least one live entry, so a cache of
/// 4 KiB leaves costs one probe sequence.
///
/// The slots and the mutable bookkeeping (counters, per-size counts) live in memory allocated once
/// and reached through `let` pointers, not in `var` stored properties: a class's `var` is guarded by
/// a dynamic exclusivity check (`swift_beginAccess`) on every access, which would dominate a hit. The
/// 4 KiB probe is `@inlinable` so a caller in another module (the translation path, the benchmark)
/// inlines it; 2 MiB and 1 GiB probes and the miss are an out-of-line call.
///
/// Eviction is random (deterministic xorshift) among occupied slots: no referenced bit has to be
/// written on a hit.
public final class IOTLB {
  /// Most entries held at once.
  public let capacity: Int

  /// 32 bytes: with the table 64-byte aligned no slot straddles two cache lines, so a hit touches
  /// exactly one line, and each key word is compared whole (no masking on the hit path).
  @usableFromInline
  struct Slot: Sendable {
    /// (domain << 32) | pasid.
    @usableFromInline var tag: UInt64
    /// 0 = empty; else the IOVA of the leaf's first byte | (size code << 1) | 1.
    @usableFromInline var key: UInt64
    /// Output address of the leaf's first byte.
    @usableFromInline var physicalBase: UInt64
    /// `IOProtection.rawValue`.
    @usableFromInline var protection: UInt64

    @usableFromInline
    init(tag: UInt64, key: UInt64, physicalBase: UInt64, protection: UInt64) {
      self.tag = tag
      self.key = key
      self.physicalBase = physicalBase
      self.protection = protection
    }

    static let empty = Slot(tag: 0, key: 0, physicalBase: 0, protection: 0)
    var isEmpty: Bool { key == 0 }
    var sizeCode: UInt64 { (key >> 1) & 3 }
    var iovaBase: UInt64 { key & ~0xFFF }
    var domain: UInt64 { tag >> 32 }
    var pasid: UInt64 { tag & 0xFFFF_FFFF }
  }

  /// Everything that changes after `init`, kept out of the class's stored properties (see above).
  @usableFromInline
  struct State {
    @usableFromInline var hits = 0
    @usableFromInline var misses = 0
    /// Live entries per leaf size (4 KiB, 2 MiB, 1 GiB).
    @usableFromInline var count4K = 0
    @usableFromInline var count2M = 0
    @usableFromInline var count1G = 0
    var count = 0
    var insertions = 0
    var evictions = 0
    var invalidations = 0
    var invalidatedEntries = 0
    var randomState: UInt64 = 0x2545_F491_4F6C_DD1D

    @usableFromInline init() {}
  }

  /// `slotMask + 1` slots, 64-byte aligned, all-zero bytes = empty.
  @usableFromInline let slots: UnsafeMutablePointer<Slot>
  @usableFromInline let state: UnsafeMutablePointer<State>
  /// Survivors of a full-table invalidation, preallocated (`capacity` slots) so invalidation does not
  /// allocate either.
  private let scratch: UnsafeMutablePointer<Slot>
  @usableFromInline let slotMask: Int
  @usableFromInline let hashShift: UInt64

  /// Entries held.
  public var count: Int { state.pointee.count }
  public var hits: Int { state.pointee.hits }
  public var misses: Int { state.pointee.misses }
  public var insertions: Int { state.pointee.insertions }
  public var evictions: Int { state.pointee.evictions }
  /// Invalidation requests (any kind).
  public var invalidations: Int { state.pointee.invalidations }
  /// Entries removed by invalidation.
  public var invalidatedEntries: Int { state.pointee.invalidatedEntries }

  /// One invalidation as requested of this IOTLB.
  public enum Invalidation: Hashable, Sendable {
    case range(DomainID, PASID?, Range<IOVA>)
    case pasid(DomainID, PASID)
    case domain(DomainID)
    case all
  }
  /// Told of every invalidation before it is applied. A guest kernel's IOMMU driver forwards them to
  /// the vIOMMU as commands: in a guest this IOTLB is the driver's software view, and the vIOMMU's
  /// cache is the one devices use (HostPlatform/VIOMMU/README.md).
  public var invalidationObserver: ((Invalidation) -> Void)?

  /// - Parameter capacity: entries held before eviction; clamped to 1...2^24 (a model, not a memory hog).
  public init(capacity: Int) {
    let wanted = min(max(capacity, 1), 1 << 24)
    self.capacity = wanted
    var tableBits = 1
    while (1 << tableBits) < 2 * wanted { tableBits += 1 }
    let slotCount = 1 << tableBits
    let raw = UnsafeMutableRawPointer.allocate(
      byteCount: slotCount * MemoryLayout<Slot>.stride, alignment: 64)
    raw.initializeMemory(as: UInt8.self, repeating: 0, count: slotCount * MemoryLayout<Slot>.stride)
    slots = raw.bindMemory(to: Slot.self, capacity: slotCount)
    scratch = UnsafeMutablePointer<Slot>.allocate(capacity: wanted)
    state = UnsafeMutablePointer<State>.allocate(capacity: 1)
    state.initialize(to: State())
    slotMask = slotCount - 1
    hashShift = UInt64(64 - tableBits)
  }

  deinit {
    state.deinitialize(count: 1)
    state.deallocate()
    scratch.deallocate()
    UnsafeMutableRawPointer(slots).deallocate()
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

  /// The (domain, PASID) half of a slot's key. The PASID is not masked: one beyond 20 bits is never
  /// inserted, so a lookup for it simply misses without a separate range check.
  @inlinable @inline(__always)
  static func tag(domain: DomainID, pasid: PASID) -> UInt64 {
    (UInt64(domain.rawValue) << 32) | UInt64(pasid.rawValue)
  }

  /// The (leaf base, size) half of a slot's key; never 0.
  @inlinable @inline(__always)
  static func key(iovaBase: UInt64, sizeCode: UInt64) -> UInt64 {
    iovaBase | (sizeCode << 1) | 1
  }

  @inlinable @inline(__always)
  func home(tag: UInt64, key: UInt64) -> Int {
    let mixed = (key >> 12) ^ (tag &* 0xFF51_AFD7_ED55_8CCD)
    return Int(truncatingIfNeeded: (mixed &* 0x9E37_79B9_7F4A_7C15) &>> hashShift)
  }

  @inline(__always)
  func find(tag: UInt64, key: UInt64) -> Int? {
    var index = home(tag: tag, key: key)
    while true {
      let slot = slots[index]
      if slot.key == key && slot.tag == tag { return index }
      if slot.isEmpty { return nil }
      index = (index + 1) & slotMask
    }
  }

  // MARK: - Lookup and fill

  /// The cached translation of `iova` for (domain, pasid), or nil on a miss.
  @inlinable @inline(__always)
  public func lookup(domain: DomainID, pasid: PASID, iova: IOVA) -> IOTranslation? {
    let address = iova.rawValue
    // The 4 KiB probe, inline, when there are 4 KiB entries at all.
    if state.pointee.count4K > 0 {
      let tag = Self.tag(domain: domain, pasid: pasid)
      let key = Self.key(iovaBase: address & ~0xFFF, sizeCode: 0)
      var index = home(tag: tag, key: key)
      while true {
        let slot = slots[index]
        if slot.key == key && slot.tag == tag {
          state.pointee.hits &+= 1
          return IOTranslation(
            physical: PhysicalAddress(slot.physicalBase &+ (address & 0xFFF)),
            protection: IOProtection(rawValue: UInt8(truncatingIfNeeded: slot.protection)), pageSize: .size4K)
        }
        if slot.key == 0 { break }
        index = (index &+ 1) & slotMask
      }
    }
    return lookupLargeLeaf(domain: domain, pasid: pasid, address: address)
  }

  /// The rest of `lookup` after the 4 KiB probe missed: 2 MiB, then 1 GiB, then a counted miss.
  @usableFromInline
  func lookupLargeLeaf(domain: DomainID, pasid: PASID, address: UInt64) -> IOTranslation? {
    guard pasid.rawValue < PASID.limit else {
      state.pointee.misses += 1
      return nil
    }
    if state.pointee.count2M > 0, let hit = probe(domain, pasid, address, size: .size2M) {
      return hit
    }
    if state.pointee.count1G > 0, let hit = probe(domain, pasid, address, size: .size1G) {
      return hit
    }
    state.pointee.misses += 1
    return nil
  }

  @inline(__always)
  private func probe(_ domain: DomainID, _ pasid: PASID, _ address: UInt64, size: PageSize) -> IOTranslation?
  {
    let mask = size.bytes - 1
    let key = Self.key(iovaBase: address & ~mask, sizeCode: Self.sizeCode(size))
    guard let index = find(tag: Self.tag(domain: domain, pasid: pasid), key: key) else { return nil }
    state.pointee.hits += 1
    let slot = slots[index]
    return IOTranslation(
      physical: PhysicalAddress(slot.physicalBase &+ (address & mask)),
      protection: IOProtection(rawValue: UInt8(truncatingIfNeeded: slot.protection)), pageSize: size)
  }

  /// Caches the leaf that translated `iova` (`translation.physical` is `iova`'s output address; the
  /// leaf is `translation.pageSize`). Replaces an entry for the same leaf; evicts one when full.
  /// A PASID beyond 20 bits cannot be on the wire and is not cached (returns false).
  @discardableResult
  public func insert(domain: DomainID, pasid: PASID, iova: IOVA, translation: IOTranslation) -> Bool {
    guard pasid.rawValue < PASID.limit else { return false }
    let mask = translation.pageSize.bytes - 1
    let tag = Self.tag(domain: domain, pasid: pasid)
    let key = Self.key(iovaBase: iova.rawValue & ~mask, sizeCode: Self.sizeCode(translation.pageSize))
    let entry = Slot(
      tag: tag, key: key, physicalBase: translation.physical.rawValue &- (iova.rawValue & mask),
      protection: UInt64(translation.protection.rawValue))
    state.pointee.insertions += 1
    if let index = find(tag: tag, key: key) {
      slots[index] = entry
      return true
    }
    if state.pointee.count >= capacity { evictOne() }
    place(entry)
    return true
  }

  private func place(_ entry: Slot) {
    var index = home(tag: entry.tag, key: entry.key)
    while !slots[index].isEmpty { index = (index + 1) & slotMask }
    slots[index] = entry
    state.pointee.count += 1
    adjustSizeCount(entry.sizeCode, by: 1)
    entriesPerTag[entry.tag, default: 0] += 1
  }

  /// Live entries per (domain, PASID) tag: a range invalidation for every PASID of a domain probes
  /// only the PASIDs that have entries instead of sweeping the whole table. Updated on insertion and
  /// removal only, never on the hit path.
  private var entriesPerTag: [UInt64: Int] = [:]

  private func forgetTag(_ tag: UInt64) {
    if let remaining = entriesPerTag[tag], remaining > 1 {
      entriesPerTag[tag] = remaining - 1
    } else {
      entriesPerTag[tag] = nil
    }
  }

  @inline(__always)
  private func adjustSizeCount(_ sizeCode: UInt64, by delta: Int) {
    switch sizeCode {
    case 0: state.pointee.count4K += delta
    case 1: state.pointee.count2M += delta
    default: state.pointee.count1G += delta
    }
  }

  private func evictOne() {
    var random = state.pointee.randomState
    random ^= random << 13
    random ^= random >> 7
    random ^= random << 17
    state.pointee.randomState = random
    var index = Int(truncatingIfNeeded: random) & slotMask
    while slots[index].isEmpty { index = (index + 1) & slotMask }
    remove(at: index)
    state.pointee.evictions += 1
  }

  /// Backward-shift deletion: later members of the probe chain move into the hole so lookups never
  /// need tombstones.
  private func remove(at index: Int) {
    adjustSizeCount(slots[index].sizeCode, by: -1)
    forgetTag(slots[index].tag)
    state.pointee.count -= 1
    var hole = index
    var next = index
    while true {
      next = (next + 1) & slotMask
      let slot = slots[next]
      if slot.isEmpty { break }
      let ideal = home(tag: slot.tag, key: slot.key)
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

  /// Whether any live entry of `domain` satisfies `predicate` (its output base, leaf size and
  /// rights). A scan of every slot: for slow paths that must know what the cache could still serve
  /// (a conversion deciding whether a device can reach a page), not for translations.
  public func containsEntry(
    of domain: DomainID,
    where predicate: (_ physicalBase: UInt64, _ size: UInt64, _ protection: IOProtection) -> Bool
  ) -> Bool {
    for index in 0...slotMask {
      let slot = slots[index]
      guard slot.key != 0, slot.tag >> 32 == UInt64(domain.rawValue) else { continue }
      let size: UInt64 =
        switch slot.key >> 1 & 3 {
        case 0: 0x1000
        case 1: 0x20_0000
        default: 0x4000_0000
        }
      if predicate(
        slot.physicalBase, size, IOProtection(rawValue: UInt8(truncatingIfNeeded: slot.protection)))
      {
        return true
      }
    }
    return false
  }

  /// Live entries whose leaf is `size`.
  public func entries(of size: PageSize) -> Int {
    switch size {
    case .size4K: state.pointee.count4K
    case .size2M: state.pointee.count2M
    case .size1G: state.pointee.count1G
    }
  }

  // MARK: - Invalidation

  /// Invalidates every leaf of `domain` (and of `pasid`, if given; all PASIDs of the domain otherwise)
  /// that overlaps `range` — the range-based flush behind `iommu_iotlb_sync`. A small range with a
  /// PASID is removed leaf by leaf; otherwise the table is swept.
  public func invalidate(domain: DomainID, pasid: PASID?, range: Range<IOVA>) {
    invalidationObserver?(.range(domain, pasid, range))
    state.pointee.invalidations += 1
    guard !range.isEmpty, count > 0 else { return }
    let lo = range.lowerBound.rawValue
    let hi = range.upperBound.rawValue
    var candidates: UInt64 = 0
    for size in PageSize.allCases where entries(of: size) > 0 {
      candidates += ((hi - 1) / size.bytes) - (lo / size.bytes) + 1
    }
    // The tags to probe: the one PASID asked for, or every PASID of the domain that has entries
    // (a strict unmap invalidates all PASIDs of its domain, usually just NO_PASID).
    let tags: [UInt64]
    if let pasid {
      tags = pasid.rawValue < PASID.limit ? [Self.tag(domain: domain, pasid: pasid)] : []
    } else {
      tags = entriesPerTag.keys.filter { $0 >> 32 == UInt64(domain.rawValue) }
    }
    if candidates * UInt64(max(tags.count, 1)) <= 64 {
      for tag in tags {
        for size in PageSize.allCases where entries(of: size) > 0 {
          var base = lo & ~(size.bytes - 1)
          while base < hi {
            if let index = find(tag: tag, key: Self.key(iovaBase: base, sizeCode: Self.sizeCode(size))) {
              remove(at: index)
              state.pointee.invalidatedEntries += 1
            }
            let (nextBase, overflow) = base.addingReportingOverflow(size.bytes)
            if overflow { break }
            base = nextBase
          }
        }
      }
      return
    }
    sweep { slot in
      guard slot.domain == UInt64(domain.rawValue) else { return false }
      if let pasid, slot.pasid != UInt64(pasid.rawValue) { return false }
      let size = Self.pageSize(code: slot.sizeCode).bytes
      return slot.iovaBase < hi && slot.iovaBase &+ size > lo
    }
  }

  /// Invalidates every entry of (domain, pasid) — PASID-selective invalidation. (The PASID is taken
  /// modulo 2^20, as the 20-bit field of an invalidation descriptor would carry it.)
  public func invalidate(domain: DomainID, pasid: PASID) {
    invalidationObserver?(.pasid(domain, pasid))
    state.pointee.invalidations += 1
    let wanted = Self.tag(domain: domain, pasid: PASID(pasid.rawValue & (PASID.limit - 1)))
    sweep { slot in slot.tag == wanted }
  }

  /// Invalidates every entry of `domain`, all PASIDs (`flush_iotlb_all`).
  public func invalidate(domain: DomainID) {
    invalidationObserver?(.domain(domain))
    state.pointee.invalidations += 1
    sweep { slot in slot.domain == UInt64(domain.rawValue) }
  }

  /// Invalidates everything (a global invalidation).
  public func invalidateAll() {
    invalidationObserver?(.all)
    state.pointee.invalidations += 1
    state.pointee.invalidatedEntries += count
    clearSlots()
  }

  private func clearSlots() {
    UnsafeMutableRawPointer(slots).initializeMemory(
      as: UInt8.self, repeating: 0, count: (slotMask + 1) * MemoryLayout<Slot>.stride)
    state.pointee.count = 0
    state.pointee.count4K = 0
    state.pointee.count2M = 0
    state.pointee.count1G = 0
    entriesPerTag.removeAll(keepingCapacity: true)
  }

  /// Removes every entry `matches` selects, then re-places the survivors so probe chains stay intact.
  private func sweep(_ matches: (Slot) -> Bool) {
    guard count > 0 else { return }
    var survivors = 0
    var removed = 0
    for index in 0...slotMask where !slots[index].isEmpty {
      if matches(slots[index]) {
        removed += 1
      } else {
        scratch[survivors] = slots[index]
        survivors += 1
      }
    }
    guard removed > 0 else { return }
    clearSlots()
    for index in 0..<survivors { place(scratch[index]) }
    state.pointee.invalidatedEntries += removed
  }
}
