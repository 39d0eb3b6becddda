import HostPlatform
import IOMMU

/// SplitMix64 (Steele, Lea, Flood, OOPSLA 2014), as in the IOMMU tests (test targets cannot import
/// each other): deterministic, so every randomised vIOMMU test replays exactly.
struct VIOMMUTestRandom: RandomNumberGenerator {
  var state: UInt64
  init(seed: UInt64) { state = seed }

  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }

  mutating func below(_ bound: UInt64) -> UInt64 { next() % bound }
  mutating func chance(_ percent: UInt64) -> Bool { below(100) < percent }
}

/// A stand-in for the platform's memory: host pages of 512 words, a stage 2 (guest-physical page →
/// host page) and an access check (the page's owner, refusals injected per host page).
///
/// Stage 2 has two parts: pages mapped one by one (table pages, command queues) and a data window
/// [dataBase, dataBase + dataSize) mapped linearly to host `dataHostBase`, except 2 MiB regions
/// punched out as holes — so 1 GiB guest leaves can point at memory without a million entries.
/// Host addresses never equal guest-physical ones, so a walk that mixes them up reads nothing.
final class FakeGuestMemory: GuestPhysicalMap, GuestMemoryReader {
  static let dataBase: UInt64 = 0x40_0000_0000
  static let dataSize: UInt64 = 0x40_0000_0000
  static let dataHostBase: UInt64 = 0x9_0000_0000_0000
  static let tableHostBase: UInt64 = 0x8_0000_0000_0000

  /// Host page number → words, for pages that hold data the walk reads.
  var hostPages: [UInt64: [UInt64]] = [:]
  /// Host page number → the guest that owns it (absent: the guest `defaultOwner`).
  var owners: [UInt64: GuestID] = [:]
  let defaultOwner: GuestID
  /// Guest page number → host page number: stage 2 as the vIOMMU sees it.
  var stage2Pages: [UInt64: UInt64] = [:]
  /// Guest page number → host page number as the guest's own CPU reaches it. Tests take pages out of
  /// stage 2 without taking them from the guest, so the guest (and the test) can still read its tables.
  private var guestPages: [UInt64: UInt64] = [:]
  /// 2 MiB region numbers (gpa >> 21) of the data window without stage-2 mapping.
  var dataHoles: Set<UInt64> = []
  /// Host page numbers whose reads the access check refuses.
  var refusedHostPages: Set<UInt64> = []
  private var nextHostPage = FakeGuestMemory.tableHostBase >> 12
  /// Checked reads done.
  var reads = 0

  init(owner: GuestID = GuestID(1)) { defaultOwner = owner }

  // MARK: Platform side (what the vIOMMU sees)

  func hostAddress(of gpa: PhysicalAddress, for guest: GuestID) -> PhysicalAddress? {
    let page = gpa.rawValue >> 12
    let offset = gpa.rawValue & 0xFFF
    if let host = stage2Pages[page] { return PhysicalAddress(host << 12 | offset) }
    let address = gpa.rawValue
    guard address >= Self.dataBase, address - Self.dataBase < Self.dataSize,
      !dataHoles.contains(address >> 21)
    else { return nil }
    return PhysicalAddress(address - Self.dataBase + Self.dataHostBase)
  }

  func readWord(at address: PhysicalAddress, for guest: GuestID) -> UInt64? {
    precondition(address.rawValue % 8 == 0, "unaligned word read at \(address)")
    let page = address.rawValue >> 12
    guard (owners[page] ?? defaultOwner) == guest, !refusedHostPages.contains(page) else { return nil }
    reads += 1
    return hostPages[page]?[Int(address.rawValue & 0xFFF) >> 3] ?? 0
  }

  // MARK: Guest and test side

  /// Maps guest page `gpa` to a fresh zeroed host page; returns the host page's address.
  @discardableResult
  func mapFreshPage(at gpa: PhysicalAddress) -> PhysicalAddress {
    precondition(gpa.rawValue % 4096 == 0 && guestPages[gpa.rawValue >> 12] == nil)
    let host = nextHostPage
    nextHostPage += 1
    stage2Pages[gpa.rawValue >> 12] = host
    guestPages[gpa.rawValue >> 12] = host
    hostPages[host] = Array(repeating: 0, count: 512)
    return PhysicalAddress(host << 12)
  }

  /// The host page behind guest page `gpa` (one mapped page by page), or nil.
  func hostPage(of gpa: PhysicalAddress) -> UInt64? { stage2Pages[gpa.rawValue >> 12] }

  /// Removes the stage-2 mapping of guest page `gpa`; the host page keeps its contents and the guest
  /// its own access.
  func unmapStage2(_ gpa: PhysicalAddress) { stage2Pages[gpa.rawValue >> 12] = nil }

  /// Gives guest page `gpa` back: gone from stage 2 and from the guest.
  func release(_ gpa: PhysicalAddress) {
    stage2Pages[gpa.rawValue >> 12] = nil
    guestPages[gpa.rawValue >> 12] = nil
  }

  /// The guest's own store to its memory (no checks: it is the guest writing).
  func guestStore(_ value: UInt64, at gpa: PhysicalAddress) {
    guard let host = guestPages[gpa.rawValue >> 12] else {
      preconditionFailure("guest store to unmapped \(gpa)")
    }
    hostPages[host]![Int(gpa.rawValue & 0xFFF) >> 3] = value
  }

  /// The guest's own load (no checks).
  func guestLoad(_ gpa: PhysicalAddress) -> UInt64 {
    guard let host = guestPages[gpa.rawValue >> 12] else {
      preconditionFailure("guest load from unmapped \(gpa)")
    }
    return hostPages[host]![Int(gpa.rawValue & 0xFFF) >> 3]
  }

  /// Writes a 32-byte descriptor at `gpa` as four little-endian words.
  func guestStoreDescriptor(_ bytes: [UInt8], at gpa: PhysicalAddress) {
    precondition(bytes.count == 32)
    for word in 0..<4 {
      var value: UInt64 = 0
      for byte in 0..<8 { value |= UInt64(bytes[word * 8 + byte]) << (8 * UInt64(byte)) }
      guestStore(value, at: gpa.advanced(by: UInt64(word * 8)))
    }
  }
}

/// The guest's table memory: table pages are guest pages at `base`, `base + 4 KiB`, …, each mapped in
/// stage 2 when allocated. `RadixIOPageTable` over it writes the guest's tables in the core's format,
/// exactly as a guest IOMMU driver would (the guest writes its own memory: no checks).
final class GuestTableMemory: IOTableMemory {
  let memory: FakeGuestMemory
  private var nextPage: UInt64
  private var freePages: [UInt64] = []

  init(_ memory: FakeGuestMemory, base: UInt64 = 0x1_0000_0000) {
    self.memory = memory
    nextPage = base >> 12
  }

  func allocateTablePage() -> PhysicalAddress? {
    if let page = freePages.popLast() {
      memory.mapFreshPage(at: PhysicalAddress(page << 12))
      return PhysicalAddress(page << 12)
    }
    let page = nextPage
    nextPage += 1
    memory.mapFreshPage(at: PhysicalAddress(page << 12))
    return PhysicalAddress(page << 12)
  }

  func freeTablePage(_ page: PhysicalAddress) {
    memory.release(page)
    freePages.append(page.rawValue >> 12)
  }

  func loadEntry(_ address: PhysicalAddress) -> UInt64 { memory.guestLoad(address) }
  func storeEntry(_ value: UInt64, at address: PhysicalAddress) { memory.guestStore(value, at: address) }
}

/// A guest with its memory, its tables (built by `RadixIOPageTable`) and a vIOMMU over them.
struct VIOMMURig {
  let guest = GuestID(1)
  let memory: FakeGuestMemory
  let tableMemory: GuestTableMemory
  let viommu: VIOMMU

  init(configuration: VIOMMU.Configuration = VIOMMU.Configuration()) {
    memory = FakeGuestMemory(owner: guest)
    tableMemory = GuestTableMemory(memory)
    viommu = VIOMMU(guest: guest, stage2: memory, memory: memory, configuration: configuration)
  }

  /// Every table made, kept for the rig's lifetime: a table's deinit frees its pages, which would
  /// take them out of stage 2 under a test that only holds the vIOMMU.
  private let tables = TableKeeper()

  /// A new guest table, `bits` wide, in the guest's memory.
  func makeTable(bits: Int = 48) throws -> RadixIOPageTable {
    let table = try RadixIOPageTable(memory: tableMemory, inputAddressBits: bits)
    tables.tables.append(table)
    return table
  }

  /// The host address the data window gives guest-physical `gpa`.
  static func dataHost(_ gpa: UInt64) -> PhysicalAddress {
    PhysicalAddress(gpa - FakeGuestMemory.dataBase + FakeGuestMemory.dataHostBase)
  }
}

final class TableKeeper {
  var tables: [RadixIOPageTable] = []
}

/// The errno a call threw, or nil when it succeeded.
func viommuErrno(_ body: () throws -> Void) -> Errno? {
  do {
    try body()
    return nil
  } catch let error as IOMMUError {
    return error.errno
  } catch {
    return Errno(rawValue: -1)
  }
}
