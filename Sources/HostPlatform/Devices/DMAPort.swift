public import PCIe

/// Why the platform refused a device's DMA request. Every refusal is also a fault record and a trace
/// event on the platform side; the device sees Unsupported Request (PCIe 6.x §2.3.1).
public enum DMAFaultReason: Error, Hashable, Sendable, CustomStringConvertible {
  /// The requester is not assigned to any guest, or its domain blocks DMA.
  case blocked
  /// No translation for the address (not mapped, beyond the guest's memory, stage-2 miss).
  case notMapped
  /// The mapping does not allow the access (write to a read-only mapping).
  case permission
  /// T=1 from a TDI that is not in RUN, not bound to the owning guest, or whose IDE stream is not
  /// SECURE (SEMANTICS.md §5, §7).
  case untrustedTBit(String)
  /// T=0 to a private page (SEMANTICS.md §5: blocked and reported).
  case tZeroToPrivate
  /// The target page belongs to another guest or the hypervisor.
  case notOwner
  /// The owning guest's private page failed its integrity check (written by someone else).
  case integrity
  /// A translation fault inside the vIOMMU's nested walk.
  case translation(String)

  public var description: String {
    switch self {
    case .blocked: "blocked"
    case .notMapped: "not mapped"
    case .permission: "permission"
    case .untrustedTBit(let why): "T=1 refused: \(why)"
    case .tZeroToPrivate: "T=0 access to private memory"
    case .notOwner: "page not owned by the device's guest"
    case .integrity: "integrity check failed"
    case .translation(let why): "translation fault: \(why)"
    }
  }
}

/// What a DMA request came to.
public enum DMAVerdict: Hashable, Sendable {
  case completed
  case refused(DMAFaultReason)

  public var isCompleted: Bool { self == .completed }
}

/// The only way a device reaches memory: each access is a TLP (requester ID, address, PASID, T bit)
/// that the platform's IOMMU model checks and translates (ARCHITECTURE.md, "two boundaries": no
/// back door). Buffers are the device's own; the platform copies into or out of them.
public protocol DMAPort: AnyObject {
  /// A memory read request of `buffer.count` bytes. Every page is checked before any byte moves; on
  /// refusal the buffer is left untouched.
  func dmaRead(_ tlp: TLP, into buffer: UnsafeMutableRawBufferPointer) -> DMAVerdict
  /// A memory write request of `buffer.count` bytes. Every page is checked before any byte moves; on
  /// refusal memory is left untouched.
  func dmaWrite(_ tlp: TLP, from buffer: UnsafeRawBufferPointer) -> DMAVerdict
  /// A copy engine's transfer: `length` bytes read with `source`'s header fields (requester, address,
  /// PASID, T bit), written with `destination`'s. Exactly equivalent to a sequence of memory read
  /// requests into the device's buffer followed by memory write requests out of it, each checked as
  /// a TLP; the platform may check once per translation unit (every TLP inside one page or large
  /// page gets the same verdict) and move the bytes without an intermediate copy. Stops at the first
  /// refused request; returns the verdict and the bytes written before it.
  func dmaCopy(source: TLP, destination: TLP, length: Int) -> (verdict: DMAVerdict, bytesMoved: Int)
  /// An MSI-X message: `vector` of `function` fired (the write to the MSI window, delivered as an
  /// interrupt to whoever owns the function).
  func signalInterrupt(from function: RequesterID, vector: UInt16)
}
