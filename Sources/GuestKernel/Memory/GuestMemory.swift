import GuestABI
import IOMMU

/// The guest's physical memory as its kernel manages it: a page allocator over [0, memory size),
/// private by default, with pages made shared and private again through the page-state hypercall
/// (Linux set_memory_decrypted / set_memory_encrypted, SEMANTICS.md §5).
///
/// A conversion that fails leaves its pages in a state the guest cannot trust (the host may have
/// converted some of them, or scrubbed them): like Linux, such pages are never handed out again —
/// they are leaked and counted in ``leakedPages``.
public final class GuestMemory {
  public static let pageSize = 4096
  static let pageBytes = UInt64(pageSize)

  let host: any GuestHostInterface
  /// Bytes of guest-physical memory.
  public let size: UInt64
  /// Per page: in use (allocated or leaked).
  private var used: [Bool]
  /// Per page: shared with the host now.
  private var shared: [Bool]
  /// Per page: lost to a failed conversion, never handed out or freed again.
  private var leaked: [Bool]
  private var nextSearch = 1
  /// Pages allocated and not freed (leaked pages not counted).
  public private(set) var allocatedPages = 0
  /// Pages lost to failed conversions: never reused.
  public private(set) var leakedPages = 0
  /// Called before every CPU access the kernel makes to a buffer, so the DMA debug checks can see it.
  var cpuAccessCheck: ((_ gpa: UInt64, _ count: Int, _ write: Bool) -> Void)?

  /// Page 0 is never handed out (a zero address stays an error).
  init(host: any GuestHostInterface, size: UInt64) {
    self.host = host
    self.size = size
    let pages = Int(size / Self.pageBytes)
    used = [Bool](repeating: false, count: pages)
    shared = [Bool](repeating: false, count: pages)
    leaked = [Bool](repeating: false, count: pages)
    if pages > 0 { used[0] = true }
  }

  /// Pages of guest memory.
  public var pageCount: Int { used.count }

  // MARK: Allocation

  /// `count` contiguous zeroed private pages below `limit` (exclusive), first fit from where the
  /// last search ended. ENOMEM when no such run is free.
  public func allocatePages(_ count: Int, below limit: UInt64 = .max) throws(KernelError) -> UInt64 {
    guard count > 0 else { throw KernelError(.EINVAL, "allocation of \(count) pages") }
    let end = Int(min(UInt64(used.count), limit / Self.pageBytes))
    for start in [nextSearch, 1] {
      var run = 0
      var page = start
      while page < end {
        run = used[page] ? 0 : run + 1
        page += 1
        if run == count {
          let first = page - count
          for index in first..<page { used[index] = true }
          allocatedPages += count
          nextSearch = page
          let gpa = UInt64(first) * Self.pageBytes
          try zero(gpa, count: count)
          return gpa
        }
      }
      if start == 1 { break }
    }
    throw KernelError(.ENOMEM, "no \(count) free contiguous pages")
  }

  /// Returns pages to the allocator. They must be private (a shared page is made private first by
  /// its owner, ``setMemoryEncrypted(_:pages:)``): handing a shared page out again as private memory
  /// would leak whatever is put in it to the host.
  public func freePages(_ gpa: UInt64, count: Int) {
    let first = Int(gpa / Self.pageBytes)
    precondition(gpa % Self.pageBytes == 0 && first + count <= used.count, "freeing pages outside memory")
    for index in first..<(first + count) {
      precondition(
        used[index], "freeing a free page at GPA 0x\(String(UInt64(index) * Self.pageBytes, radix: 16))")
      precondition(!shared[index], "freeing a shared page: make it private first")
      used[index] = false
    }
    allocatedPages -= count
  }

  /// Gives pages back whatever became of them: shared ones are made private first, and pages a
  /// conversion lost (now or earlier) stay out of the allocator for good. What a caller uses when it
  /// cannot know whether a conversion on the way failed.
  public func releasePages(_ gpa: UInt64, count: Int) {
    let first = Int(gpa / Self.pageBytes)
    for index in first..<(first + count) {
      let page = UInt64(index) * Self.pageBytes
      if leaked[index] { continue }
      if shared[index] {
        do throws(KernelError) { try setMemoryEncrypted(page, pages: 1) } catch { continue }
      }
      freePages(page, count: 1)
    }
  }

  // MARK: Page state

  /// Whether the page holding `gpa` is shared now.
  public func isShared(_ gpa: UInt64) -> Bool {
    let page = Int(gpa / Self.pageBytes)
    return page < shared.count && shared[page]
  }

  /// set_memory_decrypted: the pages become shared with the host (their contents scrubbed). On
  /// failure the pages are leaked and the error returned: the caller must not use or free them.
  public func setMemoryDecrypted(_ gpa: UInt64, pages: Int) throws(KernelError) {
    try convert(gpa, pages: pages, toShared: true)
  }

  /// set_memory_encrypted: the pages become private again. On failure they are leaked.
  public func setMemoryEncrypted(_ gpa: UInt64, pages: Int) throws(KernelError) {
    try convert(gpa, pages: pages, toShared: false)
  }

  private func convert(_ gpa: UInt64, pages: Int, toShared: Bool) throws(KernelError) {
    let first = Int(gpa / Self.pageBytes)
    guard gpa % Self.pageBytes == 0, pages > 0, first + pages <= used.count,
      used[first..<(first + pages)].allSatisfy({ $0 }), !leaked[first..<(first + pages)].contains(true)
    else { throw KernelError(.EINVAL, "conversion of unallocated or misaligned pages at \(hex(gpa))") }
    do {
      try host.convert(gpa: gpa, pages: pages, toShared: toShared)
    } catch {
      // The pages' state is unknown now: never reuse them (Linux leaks them too).
      for index in first..<(first + pages) where !leaked[index] {
        leaked[index] = true
        allocatedPages -= 1
        leakedPages += 1
      }
      throw KernelError(
        error.errno,
        "\(toShared ? "set_memory_decrypted" : "set_memory_encrypted") at \(hex(gpa)): \(error.message)")
    }
    for index in first..<(first + pages) { shared[index] = toShared }
  }

  // MARK: CPU access

  /// The kernel reading memory (a driver looking at its buffer).
  public func read(_ gpa: UInt64, count: Int) throws(KernelError) -> [UInt8] {
    cpuAccessCheck?(gpa, count, false)
    do { return try host.read(gpa: gpa, count: count) } catch {
      throw KernelError(error.errno, error.message)
    }
  }

  /// The kernel writing memory.
  public func write(_ gpa: UInt64, bytes: [UInt8]) throws(KernelError) {
    cpuAccessCheck?(gpa, bytes.count, true)
    do { try host.write(gpa: gpa, bytes: bytes) } catch { throw KernelError(error.errno, error.message) }
  }

  /// Copies inside guest memory without the debug hook (the DMA API's own bounce copies).
  func copy(from source: UInt64, to destination: UInt64, count: Int) throws(KernelError) {
    do { try host.copy(from: source, to: destination, count: count) } catch {
      throw KernelError(error.errno, error.message)
    }
  }

  private func zero(_ gpa: UInt64, count: Int) throws(KernelError) {
    do { try host.write(gpa: gpa, bytes: [UInt8](repeating: 0, count: count * Self.pageSize)) } catch {
      throw KernelError(error.errno, error.message)
    }
  }
}

func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }
