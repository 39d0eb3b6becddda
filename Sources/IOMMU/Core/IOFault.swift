public import PCIe

/// Why a DMA translation failed (the fault reason an IOMMU reports; Linux iommu_report_device_fault).
public enum IOFaultReason: Hashable, Sendable, CustomStringConvertible {
  /// No device context: the requester is not known to the IOMMU.
  case unknownDevice
  /// Nothing mapped at the address.
  case notMapped
  /// Mapped, but without the right the access needs.
  case permission
  /// The domain in use blocks all DMA (blocked domain, or a group taken for a user and not yet given
  /// a domain).
  case blocked
  /// The PASID has no attachment on this device (or is outside the device's range).
  case unknownPASID
  /// The PASID is bound to a process that has exited; translation stays blocked until unbind
  /// (SEMANTICS.md §4).
  case addressSpaceExited

  public var description: String {
    switch self {
    case .unknownDevice: "unknown device"
    case .notMapped: "not mapped"
    case .permission: "permission"
    case .blocked: "blocked"
    case .unknownPASID: "unknown PASID"
    case .addressSpaceExited: "address space exited"
    }
  }
}

/// One recorded translation fault.
public struct IOFault: Error, Hashable, Sendable, CustomStringConvertible {
  public var device: BDF
  public var pasid: PASID?
  public var address: IOVA
  public var access: IOAccess
  public var reason: IOFaultReason
  /// The domain the request went through, when there was one.
  public var domain: DomainID?

  public init(
    device: BDF, pasid: PASID?, address: IOVA, access: IOAccess, reason: IOFaultReason, domain: DomainID?
  ) {
    self.device = device
    self.pasid = pasid
    self.address = address
    self.access = access
    self.reason = reason
    self.domain = domain
  }

  /// The requester ID the faulting TLP carried.
  public var requesterID: RequesterID { device.requesterID }

  public var description: String {
    "fault \(device)\(pasid.map { " \($0)" } ?? "") \(access) \(address): \(reason)"
  }
}

/// A bounded queue of fault records. When full, new faults are dropped and counted: overflow is
/// never silent (hardware fault queues behave the same, with an overflow flag).
public struct FaultQueue: Sendable {
  public let capacity: Int
  public private(set) var records: [IOFault] = []
  /// Faults dropped because the queue was full, since creation.
  public private(set) var overflowCount = 0
  /// Faults offered, recorded or not, since creation.
  public private(set) var totalReported = 0

  /// EINVAL unless `capacity` ≥ 1.
  public init(capacity: Int) throws(IOMMUError) {
    guard capacity >= 1 else { throw IOMMUError(.EINVAL, "fault queue capacity \(capacity) < 1") }
    self.capacity = capacity
  }

  mutating func report(_ fault: IOFault) {
    totalReported += 1
    if records.count < capacity {
      records.append(fault)
    } else {
      overflowCount += 1
    }
  }

  mutating func drain() -> [IOFault] {
    defer { records.removeAll(keepingCapacity: true) }
    return records
  }
}

/// The response to a page request (PCIe PRG response; Linux enum iommu_page_response_code).
public enum PageResponse: Hashable, Sendable {
  case success
  case invalid
}

/// An IOTLB invalidation the core asked for because a shared CPU page table changed. Logged for
/// tests and passed to ``IOMMUCore/iotlbInvalidationHook`` for the IOTLB wired in later.
public struct IOTLBInvalidation: Hashable, Sendable {
  public enum Scope: Hashable, Sendable {
    /// Addresses [start, start + size) of the PASID.
    case range(start: VirtualAddress, size: UInt64)
    /// Everything the PASID may have cached (the process exited).
    case all
  }
  public var domain: DomainID
  public var group: GroupID
  public var pasid: PASID
  public var scope: Scope
  public init(domain: DomainID, group: GroupID, pasid: PASID, scope: Scope) {
    self.domain = domain
    self.group = group
    self.pasid = pasid
    self.scope = scope
  }
}
