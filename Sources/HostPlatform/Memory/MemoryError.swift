public import IOMMU

/// A refused memory access or page operation: why, and the errno a guest (or the VMM) sees for it.
/// A refusal changes nothing: every operation checks all the pages it touches before it acts.
public struct MemoryError: Error, Hashable, Sendable, CustomStringConvertible {
  public enum Reason: Hashable, Sendable {
    /// `[address, address + count)` is not inside host memory, or its end overflows: EFAULT.
    case outOfRange(PhysicalAddress, count: Int)
    /// A negative count, an address that should be page-aligned and is not, or a conversion to a
    /// state a guest cannot ask for: EINVAL.
    case invalidArgument(String)
    /// The accessor, or the guest asking for a conversion, does not own the page (`owner` nil: the
    /// hypervisor does): EPERM. Guests are isolated: no access made for one guest reaches another's.
    case notOwner(page: PhysicalAddress, owner: GuestID?)
    /// The page's integrity check failed: someone other than its owner wrote the private page since
    /// the owner last wrote all of it (TDX: the MAC / TD-owner bit no longer matches): EIO, the
    /// machine-check a guest sees as a memory failure.
    case integrityFailure(page: PhysicalAddress)
    /// The page is already in the state a conversion asks for: EINVAL.
    case wrongState(page: PhysicalAddress, state: PlatformMemory.PageState)
    /// Fewer free pages than asked for: ENOMEM. Nothing was assigned.
    case exhausted(requested: Int, free: Int)
  }

  public var reason: Reason

  public init(_ reason: Reason) { self.reason = reason }

  public var errno: Errno {
    switch reason {
    case .outOfRange: .EFAULT
    case .invalidArgument, .wrongState: .EINVAL
    case .notOwner: .EPERM
    case .integrityFailure: .EIO
    case .exhausted: .ENOMEM
    }
  }

  public var description: String {
    let what: String
    switch reason {
    case .outOfRange(let address, let count):
      what = "\(count) bytes at \(address) are outside host memory"
    case .invalidArgument(let why): what = why
    case .notOwner(let page, let owner):
      what = "page \(page) belongs to \(owner.map { "\($0)" } ?? "the hypervisor")"
    case .integrityFailure(let page): what = "integrity check failed on page \(page)"
    case .wrongState(let page, let state): what = "page \(page) is already \(state)"
    case .exhausted(let requested, let free): what = "\(requested) pages asked for, \(free) free"
    }
    return "\(errno.name): \(what)"
  }
}
