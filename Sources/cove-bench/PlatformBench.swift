// Section 5: the host platform's two per-unit costs (issue 5, "Speed"), each beside a baseline measured
// in the same run:
// - nested walk cost per translation: the vIOMMU's uncached walk of a guest's stage-1 tables (every
//   table entry reached through stage 2 and read through the platform memory's checked read, then
//   stage 2 of the output) beside the shared IOMMU core's single-stage walk of a host table holding the
//   same mappings; the vIOMMU's IOTLB hit is printed beside them;
// - page conversion cost per page: `VMM.convert` (ownership table, scrub, IOMMU alias unmapped and the
//   other mapped) beside zeroing the same number of 4 KiB pages with memset, the scrub a conversion
//   cannot avoid; `PlatformMemory.convert` alone (ownership table + scrub, no IOMMU work) between them.
import CoveCrypto
import Foundation
import GuestABI
import HostPlatform
import IOMMU
import PCIe

/// SplitMix64 (Steele, Lea, Flood, OOPSLA 2014): deterministic, so every run builds the same guest.
struct BenchRandom: RandomNumberGenerator {
  var state: UInt64
  init(seed: UInt64) { state = seed }

  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}

/// A guest's memory as the platform would give it to the vIOMMU: the guest's pages are real
/// `PlatformMemory` pages assigned to it (private), stage 2 is a flat array from guest page to host
/// page (as `VMMGuest.pages`), and every read goes through `PlatformMemory`'s checked read as the
/// owner. As `IOTableMemory` it is the guest's own view (GPA through its stage 2, as the owner), so a
/// `RadixIOPageTable` over it writes the guest's stage-1 tables in guest memory, as a guest driver would.
final class BenchGuestMemory: GuestPhysicalMap, GuestMemoryReader, IOTableMemory {
  let guest: GuestID
  let memory: PlatformMemory
  /// Stage 2: host page of each guest page.
  let pages: [PhysicalAddress]
  private var nextTablePage: Int
  private var freeTablePages: [UInt64] = []

  /// `dataPages` guest pages for data, then `tablePages` for the guest's tables.
  init(guest: GuestID, dataPages: Int, tablePages: Int) throws {
    self.guest = guest
    memory = PlatformMemory(pages: dataPages + tablePages, entropy: SystemEntropy())
    pages = try memory.assign(pages: dataPages + tablePages, to: guest)
    nextTablePage = dataPages
  }

  // MARK: Platform side (what the vIOMMU sees)

  func hostAddress(of gpa: PhysicalAddress, for guest: GuestID) -> PhysicalAddress? {
    let page = gpa.rawValue >> 12
    guard guest == self.guest, page < UInt64(pages.count) else { return nil }
    return PhysicalAddress(pages[Int(page)].rawValue | gpa.rawValue & 0xFFF)
  }

  func readWord(at address: PhysicalAddress, for guest: GuestID) -> UInt64? {
    var word: UInt64 = 0
    do {
      try withUnsafeMutableBytes(of: &word) { try memory.read(address, into: $0, as: .owner(guest)) }
    } catch {
      return nil
    }
    return UInt64(littleEndian: word)
  }

  // MARK: Guest side (the guest's driver writing its own tables)

  func allocateTablePage() -> PhysicalAddress? {
    if let page = freeTablePages.popLast() { return PhysicalAddress(page << 12) }
    guard nextTablePage < pages.count else { return nil }
    nextTablePage += 1
    return PhysicalAddress(UInt64(nextTablePage - 1) << 12)  // assigned pages start zeroed
  }

  func freeTablePage(_ page: PhysicalAddress) {
    try! memory.write(
      [UInt8](repeating: 0, count: PlatformMemory.pageSize), at: hostAddress(of: page, for: guest)!,
      as: .owner(guest))
    freeTablePages.append(page.rawValue >> 12)
  }

  func loadEntry(_ address: PhysicalAddress) -> UInt64 {
    readWord(at: hostAddress(of: address, for: guest)!, for: guest)!
  }

  func storeEntry(_ value: UInt64, at address: PhysicalAddress) {
    var word = value.littleEndian
    try! withUnsafeBytes(of: &word) {
      try memory.write($0, at: hostAddress(of: address, for: guest)!, as: .owner(guest))
    }
  }
}

enum PlatformBench {
  static func run(runs: Int) throws {
    try nestedWalk(passes: max(5, runs / 4))
    print("")
    try conversion(runs: runs)
  }

  /// The median of the per-operation nanoseconds of `samples`, each a pass of `operations` operations.
  static func medianNanoseconds(_ samples: [Duration], operations: Int) -> Double {
    medianMilliseconds(samples) * 1e6 / Double(operations)
  }

  // MARK: - Nested walk per translation

  static func nestedWalk(passes: Int) throws {
    let mappings = 1 << 16
    let iovaPages = 1 << 20  // a 4 GiB IOVA window, a sixteenth of its pages mapped
    let translations = 1 << 18
    let guest = GuestID(1)
    var random = BenchRandom(seed: 0x436F_7665_5F76_494F)

    // 64 Ki distinct random IOVA pages in the window, each to a distinct random guest data page.
    var chosen = Set<UInt64>()
    var iovas: [IOVA] = []
    iovas.reserveCapacity(mappings)
    while iovas.count < mappings {
      let page = random.next() % UInt64(iovaPages)
      if chosen.insert(page).inserted { iovas.append(IOVA(page << 12)) }
    }
    var targets = Array(0..<UInt64(mappings))
    targets.shuffle(using: &random)

    let memory = try BenchGuestMemory(guest: guest, dataPages: mappings, tablePages: 4096)
    let guestTable = try RadixIOPageTable(memory: memory, inputAddressBits: 48)
    let hostPool = try TablePagePool(maxPages: 4096)
    let hostTable = try RadixIOPageTable(memory: hostPool)
    for (iova, target) in zip(iovas, targets) {
      let gpa = PhysicalAddress(target << 12)
      try guestTable.map(iova, to: gpa, size: 4096, protection: .readWrite)
      // The host table maps each IOVA straight to the host page the nested walk ends at.
      try hostTable.map(
        iova, to: memory.hostAddress(of: gpa, for: guest)!, size: 4096, protection: .readWrite)
    }
    let table = try GuestIOTable(domain: DomainID(rawValue: 1), root: guestTable.root, inputAddressBits: 48)
    let requester = RequesterID(rawValue: 0x0100)
    let viommu = VIOMMU(
      guest: guest, stage2: memory, memory: memory,
      configuration: VIOMMU.Configuration(iotlbCapacity: mappings))
    try viommu.execute(
      .attach(requester: requester, pasid: nil, domain: table.domain, root: table.root, inputAddressBits: 48))

    // Every mapping agrees across the three paths; this also fills the vIOMMU's IOTLB.
    for iova in iovas {
      let nested = NestedWalk.translate(
        iova, access: .read, table: table, guest: guest, stage2: memory, memory: memory)
      guard case .success(let walked) = nested,
        case .success(let cached) = viommu.translate(
          requester: requester, pasid: nil, iova: iova, access: .read),
        let single = hostTable.translate(iova),
        walked.hostPhysical == single.physical, cached.hostPhysical == single.physical
      else { fatalError("nested and single-stage translations of \(iova) disagree") }
    }
    let walksBefore = viommu.stage1Walks

    let probes: [IOVA] = (0..<translations).map { _ in iovas[Int(random.next() % UInt64(mappings))] }
    var sink: UInt64 = 0
    let clock = ContinuousClock()
    var nestedSamples: [Duration] = []
    var cachedSamples: [Duration] = []
    var singleSamples: [Duration] = []
    for pass in 0...passes {
      let nested = clock.measure {
        for iova in probes {
          if case .success(let translation) = NestedWalk.translate(
            iova, access: .read, table: table, guest: guest, stage2: memory, memory: memory)
          {
            sink &+= translation.hostPhysical.rawValue
          }
        }
      }
      let cached = clock.measure {
        for iova in probes {
          if case .success(let translation) = viommu.translate(
            requester: requester, pasid: nil, iova: iova, access: .read)
          {
            sink &+= translation.hostPhysical.rawValue
          }
        }
      }
      let single = clock.measure {
        for iova in probes { sink &+= hostTable.translate(iova)?.physical.rawValue ?? 0 }
      }
      guard pass > 0 else { continue }  // the first pass warms the caches; it is not counted
      nestedSamples.append(nested)
      cachedSamples.append(cached)
      singleSamples.append(single)
    }
    precondition(viommu.stage1Walks == walksBefore, "a timed vIOMMU translation missed the IOTLB")
    precondition(sink != 42, "keeps the translations alive")

    let nestedNs = medianNanoseconds(nestedSamples, operations: translations)
    let cachedNs = medianNanoseconds(cachedSamples, operations: translations)
    let singleNs = medianNanoseconds(singleSamples, operations: translations)
    print(
      "cove-bench: vIOMMU nested walk, 64 Ki random 4 KiB guest mappings in a 4 GiB IOVA window, 4-level tables"
    )
    print(
      "  median of \(passes) interleaved passes of \(translations >> 10) Ki random translations each, ns per translation"
    )
    print(
      String(
        format:
          "  nested walk %9.1f ns  NestedWalk.translate, uncached: stage 1 with a stage-2 lookup + checked read per level, stage 2 of the output",
        nestedNs))
    print(
      String(
        format:
          "  IOTLB hit   %9.1f ns  VIOMMU.translate, stage-1 result cached (stage 2 of the output still per access)",
        cachedNs))
    print(
      String(
        format:
          "  baseline    %9.1f ns  the shared core's single-stage walk: RadixIOPageTable.translate, same mappings, host table",
        singleNs))
    print(
      String(
        format: "  ratio       %9.2f     nested / single-stage; IOTLB hit / single-stage %.2f",
        nestedNs / singleNs, cachedNs / singleNs))
  }

  // MARK: - Page conversion per page

  static func conversion(runs: Int) throws {
    let pages = 4096
    let pageSize = PlatformMemory.pageSize

    // The VMM path: a guest of `pages` pages, 4 KiB IOMMU leaves (a conversion of a page under a 2 MiB
    // leaf splits it once; the warm-up pass would hide that anyway).
    let platformMemory = PlatformMemory(pages: pages + 256, entropy: SystemEntropy())
    let core = try IOMMUCore(tableMemory: TablePagePool(maxPages: 1 << 10))
    let vmm = VMM(memory: platformMemory, iommu: PlatformIOMMU(core: core, memory: platformMemory))
    let guest = try vmm.createGuest(
      GuestConfiguration(memoryBytes: UInt64(pages * pageSize), largeIOMMUPages: false))

    // The memory side alone: another guest's pages in another platform memory, converted with
    // `PlatformMemory.convert` (ownership-table update + scrub), no IOMMU.
    let bareMemory = PlatformMemory(pages: pages, entropy: SystemEntropy())
    let bareGuest = GuestID(1)
    let barePages = try bareMemory.assign(pages: pages, to: bareGuest)

    // The baseline: memset of as many 4 KiB pages.
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: pages * pageSize, alignment: pageSize)
    defer { buffer.deallocate() }
    memset(buffer, 0xA5, pages * pageSize)

    let clock = ContinuousClock()
    var vmmSamples: [Duration] = []
    var bareSamples: [Duration] = []
    var memsetSamples: [Duration] = []
    var sink: UInt8 = 0
    // Each pass converts every page to shared and back: 2 × `pages` conversions, 2 × `pages` scrubs.
    for pass in 0...runs {
      let viaVMM = try clock.measure {
        for page in 0..<pages {
          try vmm.convert(guest.id, gpa: UInt64(page * pageSize), pages: 1, toShared: true)
        }
        for page in 0..<pages {
          try vmm.convert(guest.id, gpa: UInt64(page * pageSize), pages: 1, toShared: false)
        }
      }
      let bare = try clock.measure {
        for page in barePages { try bareMemory.convert(page, to: .shared, by: bareGuest) }
        for page in barePages { try bareMemory.convert(page, to: .private, by: bareGuest) }
      }
      let zeroing = clock.measure {
        for _ in 0..<2 {
          for page in 0..<pages { memset(buffer + page * pageSize, 0, pageSize) }
        }
      }
      sink &+= buffer.load(fromByteOffset: (pass * 4093) % (pages * pageSize), as: UInt8.self)
      guard pass > 0 else { continue }  // the first pass pages memory in and grows the tables
      vmmSamples.append(viaVMM)
      bareSamples.append(bare)
      memsetSamples.append(zeroing)
    }
    precondition(sink == 0, "memset left a byte set")
    precondition(guest.sharedPages.isEmpty, "every page converted back to private")

    let conversions = 2 * pages
    let vmmNs = medianNanoseconds(vmmSamples, operations: conversions)
    let bareNs = medianNanoseconds(bareSamples, operations: conversions)
    let memsetNs = medianNanoseconds(memsetSamples, operations: conversions)
    print(
      "cove-bench: page conversion (guest hypercall), \(pages) pages private -> shared, then back, one at a time"
    )
    print("  median of \(runs) interleaved passes, ns per page converted (one direction)")
    print(
      String(
        format:
          "  VMM.convert %9.1f ns  ownership table + 4 KiB scrub + IOMMU: unmap one alias (IOTLB invalidated), map the other",
        vmmNs))
    print(
      String(
        format:
          "  memory only %9.1f ns  PlatformMemory.convert: ownership table + 4 KiB scrub, no IOMMU work",
        bareNs))
    print(
      String(
        format:
          "  baseline    %9.1f ns  memset of one 4 KiB page to zero (the scrub a conversion cannot avoid)",
        memsetNs))
    print(
      String(
        format: "  ratio       %9.2f     VMM.convert / memset; memory only / memset %.2f", vmmNs / memsetNs,
        bareNs / memsetNs))
  }
}
