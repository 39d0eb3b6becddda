import IOMMU
import Testing

/// Property test: seeded random map / unmap / translate sequences applied to `RadixIOPageTable` and
/// `ReferenceIOPageTable`. After every operation both must have answered the same (value or errno) and
/// agree on a sample of translations; every so often their whole leaf lists must be equal.
@Suite struct PageTableDifferentialTests {
  /// Operations per seed.
  static let operations = 2500

  struct Run: Sendable, CustomTestStringConvertible {
    var seed: UInt64
    var inputAddressBits: Int
    var testDescription: String { "seed \(seed), \(inputAddressBits)-bit" }
  }

  @Test(arguments: [
    Run(seed: 1, inputAddressBits: 48), Run(seed: 0xC0FE, inputAddressBits: 48),
    Run(seed: 0x5EED_5EED, inputAddressBits: 48), Run(seed: 42, inputAddressBits: 39),
  ])
  func radixMatchesReference(_ run: Run) throws {
    let pool = try TablePagePool(maxPages: 1 << 16)
    let radix = try RadixIOPageTable(memory: pool, inputAddressBits: run.inputAddressBits)
    let reference = try ReferenceIOPageTable(inputAddressBits: run.inputAddressBits)
    var generator = OperationGenerator(seed: run.seed, inputAddressBits: run.inputAddressBits)

    for step in 0..<Self.operations {
      let operation = generator.next()
      let radixResult = operation.apply(to: radix)
      let referenceResult = operation.apply(to: reference)
      #expect(radixResult == referenceResult, "step \(step): \(operation)")
      if radixResult != referenceResult { return }
      generator.record(operation, result: radixResult)

      for iova in generator.probes(around: operation) {
        let expected = reference.translate(iova)
        #expect(radix.translate(iova) == expected, "step \(step): translate \(iova) after \(operation)")
        #expect(radix.walk(iova).translation == expected)
      }
      if step % 500 == 0 || step == Self.operations - 1 {
        #expect(radix.mappings() == reference.mappings(), "step \(step)")
        #expect(radix.mappedBytes == reference.mappedBytes)
        #expect(pool.allocatedPages == radix.tablePages)
      }
    }
    // Unmapping everything leaf by leaf leaves nothing mapped; tables whose span no unmap covered stay
    // (Linux VT-d), and the pool holds exactly the table's pages.
    for leaf in reference.mappings() {
      #expect(try radix.unmap(leaf.iova, size: leaf.pageSize.bytes) == leaf.pageSize.bytes)
    }
    #expect(radix.mappedBytes == 0)
    #expect(radix.mappings().isEmpty)
    #expect(pool.allocatedPages == radix.tablePages)
  }

  /// A pool of a few pages: maps often run out of table memory. A map refused with ENOMEM must leave
  /// the radix table exactly as it was — equal to the reference, which did not see the map — and every
  /// other answer must still match.
  @Test(arguments: [UInt64(7), 1234, 0xFFFF])
  func exhaustedMemoryRollsBackUnderRandomLoad(_ seed: UInt64) throws {
    let pool = try TablePagePool(maxPages: 10)
    let radix = try RadixIOPageTable(memory: pool)
    let reference = try ReferenceIOPageTable()
    var generator = OperationGenerator(seed: seed, inputAddressBits: 48)
    var exhausted = 0
    for step in 0..<800 {
      let operation = generator.next()
      let radixResult = operation.apply(to: radix)
      if radixResult == .failed(.ENOMEM) {
        exhausted += 1
        #expect(radix.mappings() == reference.mappings(), "step \(step): after ENOMEM from \(operation)")
        #expect(pool.allocatedPages == radix.tablePages)
        continue
      }
      let referenceResult = operation.apply(to: reference)
      #expect(radixResult == referenceResult, "step \(step): \(operation)")
      if radixResult != referenceResult { return }
      generator.record(operation, result: radixResult)
      for iova in generator.probes(around: operation) {
        #expect(radix.translate(iova) == reference.translate(iova), "step \(step): \(iova)")
      }
    }
    #expect(exhausted > 10)
    #expect(radix.mappings() == reference.mappings())
  }
}

/// One page-table call.
enum PageTableOperation: CustomStringConvertible {
  case map(IOVA, PhysicalAddress, size: UInt64, IOProtection)
  case unmap(IOVA, size: UInt64)
  case translate(IOVA)

  enum Result: Equatable {
    case mapped
    case unmapped(UInt64)
    case translated(IOTranslation?)
    case failed(Errno)
  }

  func apply(to table: some IOPageTableProtocol) -> Result {
    do {
      switch self {
      case .map(let iova, let physical, let size, let protection):
        try table.map(iova, to: physical, size: size, protection: protection)
        return .mapped
      case .unmap(let iova, let size):
        return .unmapped(try table.unmap(iova, size: size))
      case .translate(let iova):
        return .translated(table.translate(iova))
      }
    } catch {
      return .failed(error.errno)
    }
  }

  var description: String {
    switch self {
    case .map(let iova, let physical, let size, let protection):
      "map \(iova) -> \(physical) size 0x\(String(size, radix: 16)) \(protection)"
    case .unmap(let iova, let size): "unmap \(iova) size 0x\(String(size, radix: 16))"
    case .translate(let iova): "translate \(iova)"
    }
  }
}

/// Random operations that collide often: IOVAs in a 4 GiB window (plus a few at the top of the input
/// range), sizes from one page to a few 2 MiB pages or a 1 GiB page, physical addresses that are
/// sometimes aligned enough for large leaves and sometimes not, and a few invalid arguments.
struct OperationGenerator {
  var random: SplitMix64
  let inputLimit: UInt64
  /// Ranges mapped recently, to aim unmaps and probes at.
  var recent: [(iova: UInt64, size: UInt64)] = []

  static let window: UInt64 = 1 << 32

  init(seed: UInt64, inputAddressBits: Int) {
    random = SplitMix64(state: seed)
    inputLimit = 1 << UInt64(inputAddressBits)
  }

  mutating func next() -> PageTableOperation {
    let kind = random.below(100)
    if kind < 10 { return .translate(IOVA(random.below(Self.window))) }
    var (iova, size, granule) = range()
    if kind < 55 {
      let physical: UInt64
      if granule == PageSize.size1G.bytes || random.chance(75) {
        physical = random.below((1 << 40) / granule) * granule
      } else {
        physical = random.below(1 << 28) << 12
      }
      var protection = [IOProtection.read, .write, .readWrite][Int(random.below(3))]
      if random.chance(30) { protection.insert(.shared) }
      if random.chance(2) { protection = random.chance(50) ? [] : .shared }
      if random.chance(2) { size += 0x800 }
      return .map(IOVA(iova), PhysicalAddress(physical), size: size, protection)
    }
    if !recent.isEmpty && random.chance(60) {
      let target = recent[Int(random.below(UInt64(recent.count)))]
      iova = target.iova
      size = target.size
      if random.chance(30) { iova += random.below(max(size >> 12, 1)) << 12 }  // maybe inside
      if random.chance(30) { size = (random.below(size >> 12) + 1) << 12 }  // maybe shorter
    }
    if random.chance(2) { iova |= 0x800 }
    return .unmap(IOVA(iova), size: size)
  }

  /// An IOVA range: its start, its size, and the granule it was drawn at.
  private mutating func range() -> (UInt64, UInt64, UInt64) {
    let pick = random.below(100)
    let granule: UInt64 = pick < 60 ? 0x1000 : (pick < 93 ? 0x20_0000 : 0x4000_0000)
    var iova = random.below(Self.window / granule) * granule
    var size: UInt64
    switch granule {
    case 0x1000: size = (random.chance(90) ? random.below(16) + 1 : random.below(700) + 1) << 12
    case 0x20_0000: size = (random.below(3) + 1) << 21 + (random.chance(25) ? 0x1000 : 0)
    default: size = 1 << 30
    }
    if random.chance(3) {
      iova = inputLimit - (random.below(4) << 12) - 0x1000  // top of the input range, maybe beyond
    }
    return (iova, size, granule)
  }

  mutating func record(_ operation: PageTableOperation, result: PageTableOperation.Result) {
    guard case .map(let iova, _, let size, _) = operation, result == .mapped else { return }
    if recent.count == 64 { recent.remove(at: Int(random.below(64))) }
    recent.append((iova.rawValue, size))
  }

  /// Addresses to translate after `operation`: its ends and just outside them, a recent range, and a
  /// random address.
  mutating func probes(around operation: PageTableOperation) -> [IOVA] {
    var result: [UInt64] = [random.below(Self.window) & ~7]
    switch operation {
    case .map(let iova, _, let size, _), .unmap(let iova, let size):
      let start = iova.rawValue & ~0xFFF
      result += [
        start, start &+ size &- 0x1000, start &+ size, start &- 0x1000,
        start &+ (random.below(max(size >> 12, 1)) << 12) + 0x123,
      ]
    case .translate(let iova):
      result.append(iova.rawValue)
    }
    if let target = recent.last {
      result.append(target.iova + (random.below(max(target.size >> 12, 1)) << 12))
    }
    return result.map { IOVA($0) }
  }
}
