public import CoveCrypto
public import IOMMU
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Host physical memory with confidential guests' pages in it (issue 5, SEMANTICS.md §5): 4 KiB pages,
/// an ownership table like SEV-SNP's RMP or TDX's PAMT (owner guest, private or shared, integrity
/// poison), and a per-guest memory encryption key.
///
/// ## The model
/// The backing store holds every page's *plaintext*; the memory encryption engine is modelled at the
/// access boundary, by who is looking:
/// - An authorised accessor — the owning guest, or a trusted (T=1) device access made on its behalf,
///   both `.owner(guest)` — reads and writes plaintext, private or shared. That keeps authorised DMA a
///   plain `memcpy`.
/// - Anyone else — the host, a T=0 device access, `.untrusted` — reads a *private* page as
///   AES-256-XTS(guest key, tweak = the page's host physical address as 16 little-endian bytes) of the
///   whole page (the 4 KiB page is the XTS data unit), computed on the fly: real ciphertext, never
///   plaintext. Shared and hypervisor pages read as they are.
/// - An untrusted *write* to a private page does what it does to DRAM: the written bytes replace the
///   ciphertext bytes at those offsets, so the page's plaintext becomes XTS-decrypt(ciphertext with the
///   write overlaid) — the untrusted view afterwards shows exactly the bytes written — and the page is
///   integrity-poisoned (TDX's MAC mismatch). The owner's next read of it fails with
///   `integrityFailure` (EIO); so does a partial write (it is a read-modify-write of the damaged
///   data). Writing the *whole* page as its owner rewrites every byte and clears the poison, as does
///   the scrub of a conversion or a release.
/// - `.owner(guest)` reaching a page of another guest or of the hypervisor is refused with `notOwner`
///   (EPERM): guests are isolated from each other and from hypervisor memory. There is no other path
///   to a page's plaintext.
///
/// An access spanning pages is checked page by page before anything is read or written: it succeeds
/// as a whole or fails with nothing changed.
///
/// ## Pages
/// Every page starts hypervisor-owned. `assign` hands free pages to a guest as private (TDX
/// TDH.MEM.PAGE.AUG / SNP RMPUPDATE), zeroed, creating the guest's key from the entropy source on the
/// guest's first assignment; `release` scrubs and returns all of a guest's pages and destroys its key.
/// `convert` is the guest's page-state-change hypercall (TDG.VP.VMCALL<MapGPA>, SNP Page State Change):
/// private ⇄ shared, scrubbing the page.
///
/// This type knows nothing of the IOMMU. The VMM above it keeps the IOMMU rules of a conversion: it
/// refuses the conversion while a trusted device has the page mapped private (checking before it calls
/// `convert`, which then changes nothing if it refuses), and after `convert` succeeds it invalidates
/// the IOMMU mappings and IOTLB entries that covered the page. The same holds for `release`.
///
/// Single-threaded (STYLE.md rule 8): the VMM serialises access.
public final class PlatformMemory {
  public static let pageSize = 4096

  /// Who owns a page and how the memory encryption engine treats it.
  public enum PageState: Hashable, Sendable, CustomStringConvertible {
    /// Free or host memory: no guest owns it; it is read and written as it is.
    case hypervisor
    /// A guest's encrypted memory: plaintext only to the owner (and trusted devices for it).
    case `private`
    /// A guest's unencrypted memory, shared with the host and untrusted devices (swiotlb, virtio).
    case shared

    public var description: String {
      switch self {
      case .hypervisor: "hypervisor"
      case .private: "private"
      case .shared: "shared"
      }
    }
  }

  /// One entry of the ownership table. `owner` is nil exactly when `state` is `.hypervisor`;
  /// `poisoned` is only ever set on a private page.
  public struct Page: Hashable, Sendable {
    public var owner: GuestID?
    public var state: PageState
    public var poisoned: Bool

    public init(owner: GuestID?, state: PageState, poisoned: Bool = false) {
      self.owner = owner
      self.state = state
      self.poisoned = poisoned
    }

    static let free = Page(owner: nil, state: .hypervisor)
  }

  /// On whose behalf an access is made.
  public enum Accessor: Hashable, Sendable, CustomStringConvertible {
    /// The guest itself, or a trusted (T=1, TDI in RUN) device access on its behalf: sees plaintext of
    /// the guest's pages and reaches no other page.
    case owner(GuestID)
    /// The host, a T=0 device access, anything else: sees ciphertext of private pages.
    case untrusted

    public var description: String {
      switch self {
      case .owner(let guest): "owner \(guest)"
      case .untrusted: "untrusted"
      }
    }
  }

  /// The physical address of page 0.
  public let base: PhysicalAddress
  /// Pages of host memory.
  public let pageCount: Int
  /// Pages no guest owns, ready to `assign`.
  public var freePageCount: Int { freePageNumbers.count }
  /// One past the last byte of host memory.
  public var end: PhysicalAddress { base.advanced(by: UInt64(byteCount)) }

  let byteCount: Int
  /// Every page's plaintext, page `n` at `[n × 4096, (n + 1) × 4096)`, 2 MiB-aligned inside one
  /// anonymous mapping.
  let storage: UnsafeMutableRawPointer
  /// The anonymous mapping that holds `storage`, and its length.
  private let mapping: (address: UnsafeMutableRawPointer, length: Int)
  /// The memory file another process maps, when the memory lives in one (``shared(base:pages:entropy:)``).
  public let sharedFile: SharedMemoryFile?
  /// One page of working space for computing a page's ciphertext.
  let scratch: UnsafeMutableRawBufferPointer
  /// The ownership table, indexed by page number. Exclusivity is not checked dynamically: the memory
  /// is single-threaded and no access overlaps a mutation in progress (as `TablePagePool` does).
  @exclusivity(unchecked) var table: ContiguousArray<Page>
  /// Free page numbers; the lowest is at the end, so `assign` hands out low pages first.
  @exclusivity(unchecked) private var freePageNumbers: [Int]
  /// Each guest's memory encryption key, from its first assignment until its release.
  var keys: [GuestID: AES256XTS] = [:]
  private let entropy: any EntropySource

  /// `pages` pages of host memory at the page-aligned `base`, zeroed and all hypervisor-owned. Guest
  /// keys are drawn from `entropy` (64 bytes per key, drawn again in the negligible case of equal
  /// halves), so a `SeededEntropy` makes every key reproducible.
  public convenience init(base: PhysicalAddress = PhysicalAddress(0), pages: Int, entropy: any EntropySource)
  {
    let byteCount = Self.checkedSize(base: base, pages: pages)
    // An anonymous mapping: the kernel hands out zero pages lazily, so a large memory costs only what
    // is touched. Like QEMU's guest RAM it asks for transparent huge pages (MADV_HUGEPAGE, 2 MiB
    // aligned): a large DMA copy then walks few host TLB entries, as it would on a real platform whose
    // memory is mapped with large pages. The advice is only a hint; without THP the pages are 4 KiB.
    let length = byteCount + Self.hugePage
    guard let address = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
      address != MAP_FAILED
    else {
      fatalError("cannot map \(byteCount) bytes of host memory: errno \(errno)")
    }
    let storage = address.alignedUp(toMultipleOf: Self.hugePage)
    #if os(Linux)
      _ = madvise(storage, byteCount, MADV_HUGEPAGE)
    #endif
    self.init(
      base: base, pages: pages, byteCount: byteCount, mapping: (address, length), storage: storage, file: nil,
      entropy: entropy)
  }

  /// Host memory in a memory file (memfd) that another process maps too: `cove host` keeps a guest's
  /// memory there and the guest's process maps its own pages (``SharedMemoryFile``), so the guest's
  /// CPU and the devices' DMA touch the same bytes, as a VMM's guest RAM and its vCPUs do. After the
  /// pages the file holds one byte per page, nonzero while the page is integrity-poisoned, so the
  /// other process can tell the pages it must not touch directly.
  ///
  /// - Throws: `invalidArgument` (EINVAL) when the file cannot be created or mapped (the system's
  ///   reason in the message).
  public static func shared(
    base: PhysicalAddress = PhysicalAddress(0), pages: Int, entropy: any EntropySource
  )
    throws(MemoryError) -> PlatformMemory
  {
    let byteCount = checkedSize(base: base, pages: pages)
    let poisonLength = (pages + pageSize - 1) / pageSize * pageSize
    // A POSIX shared-memory object (tmpfs), unlinked at once: an anonymous memory file like memfd's,
    // which Glibc's Swift overlay does not declare. Close-on-exec; gone when the last mapping goes.
    let name = "/cove-memory-\(getpid())-\(sharedFileCount.add(1, ordering: .relaxed).newValue)"
    let fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0o600)
    guard fd >= 0 else { throw MemoryError(.invalidArgument("shm_open \(name) failed: errno \(errno)")) }
    shm_unlink(name)
    // Allocated now, not on first touch: a shared-memory filesystem that is too small (a container's
    // 64 MiB /dev/shm) refuses here with a typed error instead of a SIGBUS in the middle of a run.
    let reason = posix_fallocate(fd, 0, off_t(byteCount + poisonLength))
    guard reason == 0 else {
      close(fd)
      throw MemoryError(
        .invalidArgument(
          "cannot allocate \(byteCount + poisonLength) bytes of shared memory: \(String(cString: strerror(reason)))"))
    }
    // Reserve an aligned range, then put the file's pages over it (2 MiB aligned, as above).
    let length = byteCount + hugePage
    guard let reserved = mmap(nil, length, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
      reserved != MAP_FAILED
    else {
      close(fd)
      throw MemoryError(
        .invalidArgument("cannot reserve \(byteCount) bytes of address space: errno \(errno)"))
    }
    let storage = reserved.alignedUp(toMultipleOf: hugePage)
    guard mmap(storage, byteCount, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) != MAP_FAILED,
      let poison = mmap(nil, poisonLength, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off_t(byteCount)),
      poison != MAP_FAILED
    else {
      let reason = errno
      munmap(reserved, length)
      close(fd)
      throw MemoryError(.invalidArgument("cannot map the memory file: errno \(reason)"))
    }
    #if os(Linux)
      _ = madvise(storage, byteCount, MADV_HUGEPAGE)
    #endif
    let file = SharedMemoryFile(
      descriptor: fd, dataLength: byteCount, poisonOffset: byteCount, poisonLength: poisonLength,
      poison: poison.assumingMemoryBound(to: UInt8.self))
    return PlatformMemory(
      base: base, pages: pages, byteCount: byteCount, mapping: (reserved, length), storage: storage,
      file: file,
      entropy: entropy)
  }

  private init(
    base: PhysicalAddress, pages: Int, byteCount: Int,
    mapping: (address: UnsafeMutableRawPointer, length: Int),
    storage: UnsafeMutableRawPointer, file: SharedMemoryFile?, entropy: any EntropySource
  ) {
    self.base = base
    self.pageCount = pages
    self.byteCount = byteCount
    self.mapping = mapping
    self.storage = storage
    self.sharedFile = file
    self.scratch = .allocate(byteCount: Self.pageSize, alignment: 16)
    self.table = ContiguousArray(repeating: .free, count: pages)
    self.freePageNumbers = Array((0..<pages).reversed())
    self.entropy = entropy
  }

  private static let hugePage = 2 << 20

  private static func checkedSize(base: PhysicalAddress, pages: Int) -> Int {
    precondition(pages > 0, "host memory needs at least one page")
    precondition(base.rawValue % UInt64(Self.pageSize) == 0, "host memory base \(base) is not page-aligned")
    let (byteCount, overflow) = pages.multipliedReportingOverflow(by: Self.pageSize)
    precondition(
      !overflow && byteCount <= Int.max - Self.pageSize, "\(pages) pages overflow the address space")
    precondition(UInt64(byteCount) <= UInt64.max - base.rawValue, "host memory at \(base) overflows 64 bits")
    return byteCount
  }

  deinit {
    munmap(mapping.address, mapping.length)
    if let sharedFile {
      munmap(sharedFile.poison, sharedFile.poisonLength)
      close(sharedFile.descriptor)
    }
    scratch.deallocate()
  }

  // MARK: - The ownership table

  /// The ownership-table entry of the page holding `address`; nil outside host memory.
  public func page(at address: PhysicalAddress) -> Page? {
    guard let number = pageNumber(containing: address) else { return nil }
    return table[number]
  }

  /// Gives `count` free pages to `guest` as private, zeroed (as TDX's PAGE.AUG does), lowest free
  /// pages first; the guest's key is created on its first assignment. Returns the pages' addresses.
  ///
  /// - Throws: `exhausted` (ENOMEM) when fewer than `count` pages are free, `invalidArgument` (EINVAL)
  ///   for a negative count; nothing is assigned then.
  public func assign(pages count: Int, to guest: GuestID) throws(MemoryError) -> [PhysicalAddress] {
    guard count >= 0 else { throw MemoryError(.invalidArgument("negative page count \(count)")) }
    guard count <= freePageNumbers.count else {
      throw MemoryError(.exhausted(requested: count, free: freePageNumbers.count))
    }
    guard count > 0 else { return [] }
    if keys[guest] == nil { keys[guest] = makeKey() }
    var addresses: [PhysicalAddress] = []
    addresses.reserveCapacity(count)
    for _ in 0..<count {
      let number = freePageNumbers.removeLast()
      scrub(number)
      setEntry(number, Page(owner: guest, state: .private))
      addresses.append(address(ofPage: number))
    }
    return addresses
  }

  /// How many pages `guest` owns now.
  public func pages(ownedBy guest: GuestID) -> Int { table.lazy.filter { $0.owner == guest }.count }

  /// Returns every page of `guest` to the hypervisor, scrubbed (zeroed) and unpoisoned, and destroys
  /// the guest's key: a later assignment to the same guest gets a new one. Returns how many pages it
  /// took back.
  @discardableResult
  public func release(_ guest: GuestID) -> Int {
    var released = 0
    // From the top down, so the lowest pages end up at the end of the free list and go out first.
    for number in stride(from: pageCount - 1, through: 0, by: -1) where table[number].owner == guest {
      scrub(number)
      setEntry(number, .free)
      freePageNumbers.append(number)
      released += 1
    }
    keys[guest] = nil
    return released
  }

  /// The guest's page-state change (hypercall): converts its page at the page-aligned `page` to
  /// `state`, private ⇄ shared. The page is scrubbed (zeroed, which also clears integrity poison):
  /// neither side's data crosses the boundary.
  ///
  /// The VMM refuses the conversion itself while a trusted device has the page mapped private, before
  /// calling this, and invalidates the page's IOMMU mappings and IOTLB entries after it succeeds (see
  /// the type's documentation).
  ///
  /// - Throws: `outOfRange` (EFAULT) outside host memory; `invalidArgument` (EINVAL) for an unaligned
  ///   address or a conversion to `.hypervisor` (`release` gives pages back); `notOwner` (EPERM) when
  ///   `guest` does not own the page; `wrongState` (EINVAL) when it is already in `state`. Nothing
  ///   changes on an error.
  public func convert(_ page: PhysicalAddress, to state: PageState, by guest: GuestID) throws(MemoryError) {
    guard state != .hypervisor else {
      throw MemoryError(.invalidArgument("a guest converts pages to private or shared, not to hypervisor"))
    }
    guard let number = pageNumber(containing: page) else {
      throw MemoryError(.outOfRange(page, count: Self.pageSize))
    }
    guard page == address(ofPage: number) else {
      throw MemoryError(.invalidArgument("\(page) is not page-aligned"))
    }
    let entry = table[number]
    guard entry.owner == guest else { throw MemoryError(.notOwner(page: page, owner: entry.owner)) }
    guard entry.state != state else { throw MemoryError(.wrongState(page: page, state: state)) }
    scrub(number)
    setEntry(number, Page(owner: guest, state: state))
  }

  // MARK: - Helpers

  func address(ofPage number: Int) -> PhysicalAddress {
    base.advanced(by: UInt64(number) * UInt64(Self.pageSize))
  }

  func pageNumber(containing address: PhysicalAddress) -> Int? {
    guard address >= base else { return nil }
    let offset = address.rawValue - base.rawValue
    guard offset < UInt64(byteCount) else { return nil }
    return Int(offset / UInt64(Self.pageSize))
  }

  func pageBytes(_ number: Int) -> UnsafeMutableRawBufferPointer {
    UnsafeMutableRawBufferPointer(start: storage + number * Self.pageSize, count: Self.pageSize)
  }

  /// Changes a page's ownership-table entry, keeping the memory file's poison byte in step.
  func setEntry(_ number: Int, _ page: Page) {
    table[number] = page
    sharedFile?.poison[number] = page.poisoned ? 1 : 0
  }

  private func scrub(_ number: Int) {
    pageBytes(number).initializeMemory(as: UInt8.self, repeating: 0)
  }

  private func makeKey() -> AES256XTS {
    while true {
      // Equal halves (probability 2^-256) are refused by AES256XTS: draw again.
      if let key = try? AES256XTS(key: entropy.bytes(count: AES256XTS.keySize)) { return key }
    }
  }
}

/// Numbers the memory files of one process (each is unlinked as soon as it is open).
private let sharedFileCount = Atomic<Int>(0)

/// Host memory's memory file (``PlatformMemory/shared(base:pages:entropy:)``): what another process
/// needs to map it. `/proc/<pid>/fd/<descriptor>` opens it from a process of the same user.
public struct SharedMemoryFile: @unchecked Sendable {
  /// The memfd; open until the memory goes.
  public let descriptor: Int32
  /// Bytes of page data at offset 0 (page `n` at `n × 4096`).
  public let dataLength: Int
  /// Where the poison bytes start (page-aligned), one per page, and how long that part is.
  public let poisonOffset: Int
  public let poisonLength: Int
  let poison: UnsafeMutablePointer<UInt8>
}
