public import GuestABI
import IOMMU
public import PCIe

/// One guest's side of the VMM in a single process: the ``GuestHostInterface`` a guest kernel is
/// given, each call a hypercall into the ``VMM`` for this guest and no other. Across processes the
/// same calls travel on a socket instead (ARCHITECTURE.md, "two boundaries").
public final class VMMGuestPort: GuestHostInterface {
  public let vmm: VMM
  public let guest: GuestID

  public init(vmm: VMM, guest: GuestID) {
    self.vmm = vmm
    self.guest = guest
  }

  public var platform: GuestPlatformInfo {
    let vm = vmm.guests[guest]
    return GuestPlatformInfo(
      memoryBytes: vm?.memoryBytes ?? 0, boundary: vm?.configuration.boundary ?? .max,
      viommu: vm?.viommu != nil, functions: vmm.assignedFunctions(of: guest))
  }

  public func read(gpa: UInt64, count: Int) throws(HypercallError) -> [UInt8] {
    try call { () throws(VMMError) in try vmm.guestRead(guest, gpa: gpa, count: count) }
  }

  public func write(gpa: UInt64, bytes: [UInt8]) throws(HypercallError) {
    try call { () throws(VMMError) in try vmm.guestWrite(guest, gpa: gpa, bytes: bytes) }
  }

  public func copy(from source: UInt64, to destination: UInt64, count: Int) throws(HypercallError) {
    try call { () throws(VMMError) in try vmm.guestCopy(guest, from: source, to: destination, count: count) }
  }

  public func convert(gpa: UInt64, pages: Int, toShared: Bool) throws(HypercallError) {
    try call { () throws(VMMError) in try vmm.convert(guest, gpa: gpa, pages: pages, toShared: toShared) }
  }

  public func configRead(_ function: RequesterID, offset: Int, size: Int) throws(HypercallError) -> UInt32 {
    try call { () throws(VMMError) in
      try vmm.configRead(guest, function: function, offset: offset, size: size)
    }
  }

  public func configWrite(_ function: RequesterID, offset: Int, size: Int, value: UInt32)
    throws(HypercallError)
  {
    try call { () throws(VMMError) in
      _ = try vmm.configWrite(guest, function: function, offset: offset, size: size, value: value)
    }
  }

  public func mmioRead(_ function: RequesterID, address: UInt64) throws(HypercallError) -> UInt32 {
    try call { () throws(VMMError) in try vmm.mmio(guest, function: function, address: address) }
  }

  public func mmioWrite(_ function: RequesterID, address: UInt64, value: UInt32) throws(HypercallError) {
    try call { () throws(VMMError) in
      _ = try vmm.mmio(guest, function: function, address: address, write: value)
    }
  }

  public func bars(of function: RequesterID) throws(HypercallError) -> [Int: Range<UInt64>] {
    guard vmm.assignedFunctions(of: guest).contains(function) else {
      throw HypercallError(.EPERM, "\(function) is not assigned to \(guest)")
    }
    return vmm.bars(of: function)
  }

  public func viommuRead(_ register: VIOMMURegister) throws(HypercallError) -> UInt64 {
    try call { () throws(VMMError) in try vmm.viommuRead(guest, register) }
  }

  public func viommuWrite(_ register: VIOMMURegister, _ value: UInt64) throws(HypercallError) {
    try call { () throws(VMMError) in try vmm.viommuWrite(guest, register, value) }
  }

  public func tsm(_ request: GuestTSMRequest) throws(HypercallError) -> GuestTSMResponse {
    try call { () throws(VMMError) in try vmm.guestRequest(guest, request) }
  }

  public func drainNotifications() -> [HostNotification] { vmm.notifications(for: guest) }

  private func call<T>(_ body: () throws(VMMError) -> T) throws(HypercallError) -> T {
    do { return try body() } catch { throw HypercallError(error.errno, error.message) }
  }
}
