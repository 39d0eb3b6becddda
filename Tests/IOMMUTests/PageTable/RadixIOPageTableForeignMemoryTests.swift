import IOMMU
import Testing

/// Table memory that is not a `TablePagePool` (as a guest's memory will be): the table must take the
/// generic path through the protocol and behave the same.
final class CountingTableMemory: IOTableMemory {
  let backing: TablePagePool
  var loads = 0
  var stores = 0

  init(maxPages: Int) throws {
    backing = try TablePagePool(base: PhysicalAddress(0x7_0000_0000), maxPages: maxPages)
  }

  func allocateTablePage() -> PhysicalAddress? { backing.allocateTablePage() }
  func freeTablePage(_ page: PhysicalAddress) { backing.freeTablePage(page) }
  func loadEntry(_ address: PhysicalAddress) -> UInt64 {
    loads += 1
    return backing.loadEntry(address)
  }
  func storeEntry(_ value: UInt64, at address: PhysicalAddress) {
    stores += 1
    backing.storeEntry(value, at: address)
  }
}

@Suite struct RadixIOPageTableForeignMemoryTests {
  @Test func translateReadsOneEntryPerLevel() throws {
    let memory = try CountingTableMemory(maxPages: 16)
    let table = try RadixIOPageTable(memory: memory)
    try table.map(IOVA(0x1234_5000), to: PhysicalAddress(0x8000), size: 0x1000, protection: .read)
    #expect(memory.stores == 4)  // three new tables linked, one leaf
    memory.loads = 0
    #expect(table.translate(IOVA(0x1234_5678))?.physical == PhysicalAddress(0x8678))
    #expect(memory.loads == 4)
    #expect(table.walk(IOVA(0x1234_5678)).steps.first?.entryAddress == PhysicalAddress(0x7_0000_0000))
  }

  @Test func sameAnswersAsTheReference() throws {
    let memory = try CountingTableMemory(maxPages: 1 << 14)
    let radix = try RadixIOPageTable(memory: memory)
    let reference = try ReferenceIOPageTable()
    var generator = OperationGenerator(seed: 99, inputAddressBits: 48)
    for step in 0..<400 {
      let operation = generator.next()
      let radixResult = operation.apply(to: radix)
      let referenceResult = operation.apply(to: reference)
      #expect(radixResult == referenceResult, "step \(step): \(operation)")
      if radixResult != referenceResult { return }
      generator.record(operation, result: radixResult)
      for iova in generator.probes(around: operation) {
        #expect(radix.translate(iova) == reference.translate(iova), "step \(step): \(iova)")
      }
    }
    #expect(radix.mappings() == reference.mappings())
    #expect(memory.backing.allocatedPages == radix.tablePages)
  }
}
