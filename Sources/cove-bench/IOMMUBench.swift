// IOMMU core figures (issue: shared IOMMU core, "Speed"), each beside a baseline measured in the
// same run where the issue names one, at 1 K, 64 K and 1 M live mappings.
import Foundation
import IOMMU

/// A plain open-addressing hash table (linear probing, Fibonacci hashing) from page number to frame:
/// the baseline an IOTLB hit is held against.
struct PlainHashTable {
  private var keys: ContiguousArray<UInt64>
  private var values: ContiguousArray<UInt64>
  private let mask: Int
  private static let empty = UInt64.max

  init(capacity: Int) {
    var size = 16
    while size < capacity * 2 { size <<= 1 }
    keys = ContiguousArray(repeating: Self.empty, count: size)
    values = ContiguousArray(repeating: 0, count: size)
    mask = size - 1
  }

  private func slot(_ key: UInt64) -> Int {
    Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> 32) & mask
  }

  mutating func insert(_ key: UInt64, _ value: UInt64) {
    var index = slot(key)
    while keys[index] != Self.empty && keys[index] != key { index = (index + 1) & mask }
    keys[index] = key
    values[index] = value
  }

  func lookup(_ key: UInt64) -> UInt64? {
    var index = slot(key)
    while keys[index] != Self.empty {
      if keys[index] == key { return values[index] }
      index = (index + 1) & mask
    }
    return nil
  }
}

enum IOMMUBench {
  static let scales = [1 << 10, 1 << 16, 1 << 20]

  /// Nanoseconds per operation: the best of five timed passes of `operations` calls.
  static func nanoseconds(operations: Int, _ body: () throws -> Void) rethrows -> Double {
    let clock = ContinuousClock()
    var best = Double.infinity
    for _ in 0..<5 {
      let elapsed = try clock.measure(body)
      let ns = (Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9)
      best = min(best, ns / Double(operations))
    }
    return best
  }

  /// A random permutation-ish sequence of indices in 0..<count (SplitMix64, fixed seed).
  static func shuffledIndices(_ count: Int, samples: Int) -> [Int] {
    var state: UInt64 = 0x436F_7665
    return (0..<samples).map { _ in
      state &+= 0x9E37_79B9_7F4A_7C15
      var z = state
      z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
      z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
      return Int((z ^ (z >> 31)) % UInt64(count))
    }
  }

  static func run() throws {
    print(
      "cove-bench: IOMMU core (radix page table, IOTLB, IOVA allocator, dma-iommu layer), best of 5 passes")
    print(
      "  live       IOTLB hit  hash-table  ratio  (<=2.0)   page walk   strict map+unmap (<=250)  lazy map+unmap (<=150)  bytes/mapping (<=24 at 1 M)"
    )
    for live in scales {
      try row(live: live)
    }
  }

  static func row(live: Int) throws {
    let samples = 1 << 20
    let order = shuffledIndices(live, samples: samples)
    let base: UInt64 = 0x1_0000_0000

    // IOTLB hits against the plain table, same keys, same lookup order.
    let iotlb = IOTLB(capacity: live)
    var plain = PlainHashTable(capacity: live)
    let domain = DomainID(rawValue: 1)
    for index in 0..<live {
      let iova = IOVA(UInt64(index) << 12)
      iotlb.insert(
        domain: domain, pasid: .noPASID, iova: iova,
        translation: IOTranslation(
          physical: PhysicalAddress(base + UInt64(index) << 12), protection: .readWrite, pageSize: .size4K))
      plain.insert(UInt64(index), base + UInt64(index) << 12)
    }
    var sink: UInt64 = 0
    let iotlbNs = nanoseconds(operations: samples) {
      for index in order {
        sink &+=
          iotlb.lookup(domain: domain, pasid: .noPASID, iova: IOVA(UInt64(index) << 12))?.physical.rawValue
          ?? 0
      }
    }
    let plainNs = nanoseconds(operations: samples) {
      for index in order { sink &+= plain.lookup(UInt64(index)) ?? 0 }
    }

    // Page walks: a 4-level table with `live` 4 KiB leaves, translated in random order.
    let walkPool = try TablePagePool(maxPages: live / 256 + 64)
    let table = try RadixIOPageTable(memory: walkPool)
    for index in 0..<live {
      try table.map(
        IOVA(UInt64(index) << 12), to: PhysicalAddress(base + UInt64(index) << 12), size: 4096,
        protection: .readWrite)
    }
    let walkNs = nanoseconds(operations: samples) {
      for index in order { sink &+= table.translate(IOVA(UInt64(index) << 12))?.physical.rawValue ?? 0 }
    }

    // dma_map_page + dma_unmap_page pairs with `live` other mappings held, strict and lazy.
    func dmaLayer(_ mode: DMAMappingLayer.InvalidationMode) throws -> (DMAMappingLayer, TablePagePool) {
      let pool = try TablePagePool(maxPages: live / 256 + 64)
      let layer = try DMAMappingLayer(
        domainID: domain, pageTable: RadixIOPageTable(memory: pool), iotlb: IOTLB(capacity: 4096), mode: mode,
        aperture: IOVA(0)..<IOVA(1 << 48), reserved: [IOMMUCore.msiWindow], dmaLimit: IOVA(1 << 48))
      for index in 0..<live {
        _ = try layer.map(
          physical: PhysicalAddress(base + UInt64(index) << 12), size: 4096, protection: .readWrite)
      }
      return (layer, pool)
    }
    let pairs = 1 << 18
    let (strict, strictPool) = try dmaLayer(.strict)
    let strictNs = try nanoseconds(operations: pairs) {
      for index in 0..<pairs {
        let iova = try strict.map(
          physical: PhysicalAddress(0x80_0000_0000 + UInt64(index & 0xFFF) << 12), size: 4096,
          protection: .readWrite)
        try strict.unmap(iova: iova, size: 4096)
      }
    }
    let bytesPerMapping = Double(strictPool.storageBytes + strict.allocator.memoryFootprint) / Double(live)
    let (lazy, _) = try dmaLayer(.lazy(queueCapacity: 256))
    let lazyNs = try nanoseconds(operations: pairs) {
      for index in 0..<pairs {
        let iova = try lazy.map(
          physical: PhysicalAddress(0x80_0000_0000 + UInt64(index & 0xFFF) << 12), size: 4096,
          protection: .readWrite)
        try lazy.unmap(iova: iova, size: 4096)
      }
    }
    precondition(sink != 42, "keeps the lookups alive")
    let label = live >= 1 << 20 ? "\(live >> 20) M" : "\(live >> 10) K"
    print(
      String(
        format:
          "  %-8@ %8.1f ns %9.1f ns  %5.2f %-6@ %8.1f ns   %10.1f ns %-6@       %10.1f ns %-6@     %8.2f %@",
        label as NSString, iotlbNs, plainNs, iotlbNs / plainNs,
        (iotlbNs / plainNs <= 2 ? "met" : "NOT") as NSString,
        walkNs, strictNs, (strictNs <= 250 ? "met" : "NOT") as NSString, lazyNs,
        (lazyNs <= 150 ? "met" : "NOT") as NSString,
        bytesPerMapping,
        (live < 1 << 20 ? "(target is at 1 M)" : bytesPerMapping <= 24 ? "met" : "NOT") as NSString))
  }
}
