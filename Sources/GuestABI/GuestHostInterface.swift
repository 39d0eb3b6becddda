public import IOMMU
public import PCIe
public import TDISP

/// A hypercall the host refused, with the errno the guest kernel sees (Linux's hypercall and
/// guest-request paths return errno values, SEMANTICS.md).
public struct HypercallError: Error, Hashable, Sendable, CustomStringConvertible {
  public var errno: Errno
  public var message: String
  public init(_ errno: Errno, _ message: String) {
    self.errno = errno
    self.message = message
  }
  public var description: String { "\(errno): \(message)" }
}

/// What the platform tells a guest at boot (firmware tables in a real VM): its memory, how its DMA
/// addresses are split, whether it has a vIOMMU, and the PCI functions assigned to it.
public struct GuestPlatformInfo: Hashable, Sendable {
  /// Bytes of guest-physical memory, from GPA 0.
  public var memoryBytes: UInt64
  /// Without a vIOMMU: the boundary X. A device address below X reaches private memory at that GPA;
  /// at or above X it reaches shared memory at address − X. `UInt64.max`: every address is private
  /// (SEMANTICS.md §5). Not used with a vIOMMU.
  public var boundary: UInt64
  /// Whether the guest has the paravirtual vIOMMU (HostPlatform/VIOMMU/README.md).
  public var viommu: Bool
  /// The guest's PCI functions, in requester-ID order.
  public var functions: [RequesterID]

  public init(memoryBytes: UInt64, boundary: UInt64, viommu: Bool, functions: [RequesterID]) {
    self.memoryBytes = memoryBytes
    self.boundary = boundary
    self.viommu = viommu
    self.functions = functions
  }

  /// Whether device addresses can reach shared memory without a vIOMMU (X is not all ones).
  public var hasSharedAlias: Bool { viommu || boundary != .max }
}

/// Something the host tells the guest asynchronously: an interrupt, or a TDI whose state changed
/// without the guest asking (the host or the device forced it: ERROR, STOP, FLR, the IDE stream or
/// the SPDM session lost). SEMANTICS.md §6: the guest must react before it maps anything new.
public enum HostNotification: Hashable, Sendable, CustomStringConvertible {
  /// An MSI-X message from a function.
  case interrupt(RequesterID, vector: UInt16)
  /// The function's TDI moved from one state to another on the device.
  case tdiStateChanged(RequesterID, from: TDIState, to: TDIState)

  public var description: String {
    switch self {
    case .interrupt(let function, let vector): "MSI-X \(vector) from \(function)"
    case .tdiStateChanged(let function, let from, let to): "\(function) TDI \(from) → \(to)"
    }
  }
}

/// The one interface between a guest and the host (ARCHITECTURE.md, "two boundaries"): every
/// hypercall a guest kernel makes. In one process an object passed to the guest kernel; across
/// processes the same calls framed on a socket. The guest never holds a host object.
public protocol GuestHostInterface: AnyObject {
  /// The platform's description of this guest.
  var platform: GuestPlatformInfo { get }

  /// The guest CPU reading its own memory (plaintext of private and shared pages alike).
  func read(gpa: UInt64, count: Int) throws(HypercallError) -> [UInt8]
  /// The guest CPU writing its own memory.
  func write(gpa: UInt64, bytes: [UInt8]) throws(HypercallError)
  /// The guest CPU copying within its own memory (memcpy; the ranges may overlap): what a bounce
  /// buffer costs, without carrying the bytes across the interface twice.
  func copy(from source: UInt64, to destination: UInt64, count: Int) throws(HypercallError)
  /// Page-state change (TDX MapGPA, SEV-SNP page-state change): `pages` 4 KiB pages at `gpa` become
  /// shared (`toShared`) or private, scrubbed. All or nothing.
  func convert(gpa: UInt64, pages: Int, toShared: Bool) throws(HypercallError)

  /// Trapped configuration-space accesses to an assigned function.
  func configRead(_ function: RequesterID, offset: Int, size: Int) throws(HypercallError) -> UInt32
  func configWrite(_ function: RequesterID, offset: Int, size: Int, value: UInt32) throws(HypercallError)
  /// Trapped 32-bit MMIO accesses to an assigned function's BARs (guest-physical addresses).
  func mmioRead(_ function: RequesterID, address: UInt64) throws(HypercallError) -> UInt32
  func mmioWrite(_ function: RequesterID, address: UInt64, value: UInt32) throws(HypercallError)
  /// The guest-physical BARs of a function, by BAR index (what the guest's PCI enumeration finds).
  func bars(of function: RequesterID) throws(HypercallError) -> [Int: Range<UInt64>]

  /// The guest's vIOMMU registers (HostPlatform/VIOMMU/README.md): commands go through the command
  /// queue in guest memory and the CQ_TAIL write, fault records come out of FAULT_RECORD/FAULT_POP.
  /// ENODEV without a vIOMMU.
  func viommuRead(_ register: VIOMMURegister) throws(HypercallError) -> UInt64
  func viommuWrite(_ register: VIOMMURegister, _ value: UInt64) throws(HypercallError)
  /// A guest request to the host TSM about one of the guest's TDIs.
  func tsm(_ request: GuestTSMRequest) throws(HypercallError) -> GuestTSMResponse

  /// Everything the host has to tell the guest since the last call, oldest first.
  func drainNotifications() -> [HostNotification]
}
