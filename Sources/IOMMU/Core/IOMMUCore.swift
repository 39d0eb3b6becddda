public import PCIe

/// The policy half of Cove's IOMMU core: groups, DMA ownership, domains, PASIDs, SVA and faults, with
/// the rules and errno of the Linux IOMMU core (drivers/iommu/iommu.c, iommu-sva.c; SEMANTICS.md
/// §1–4). Single-threaded; every public entry validates its input and throws ``IOMMUError``.
///
/// The façade is spread over files by concern: topology here, `+Ownership`, `+Domains`, `+PASID`,
/// `+SVA`, `+Translation`.
public final class IOMMUCore {
  /// Boot-time policy (Linux command line and platform).
  public struct Configuration: Sendable {
    /// iommu.passthrough=1: default domains are identity. Ignored on a confidential platform.
    public var passthrough: Bool
    /// iommu.strict=1: translated default domains invalidate on every unmap (dma) instead of through
    /// a flush queue (dmaFQ). Linux's default build is lazy.
    public var strict: Bool
    /// A memory-encrypted (confidential) platform: default domains are never identity (Linux
    /// iommu_subsys_init: "Memory encryption detected - Disabling default IOMMU Passthrough").
    public var confidentialPlatform: Bool
    /// Fault records kept before new ones are dropped (and counted).
    public var faultQueueCapacity: Int
    /// One past the largest global PASID handed out (at most 2^20).
    public var pasidLimit: UInt32
    /// Translations the IOTLB holds before it evicts.
    public var iotlbCapacity: Int
    /// Unmapped IOVAs a DMA-FQ domain queues before it forces a flush.
    public var flushQueueCapacity: Int
    /// The IOVA width DMA domains hand out (the device's DMA mask in Linux); 48 = the table's width.
    public var dmaAddressBits: Int

    public init(
      passthrough: Bool = false, strict: Bool = false, confidentialPlatform: Bool = false,
      faultQueueCapacity: Int = 256, pasidLimit: UInt32 = PASID.limit, iotlbCapacity: Int = 4096,
      flushQueueCapacity: Int = 256, dmaAddressBits: Int = 48
    ) {
      self.passthrough = passthrough
      self.strict = strict
      self.confidentialPlatform = confidentialPlatform
      self.faultQueueCapacity = faultQueueCapacity
      self.pasidLimit = pasidLimit
      self.iotlbCapacity = iotlbCapacity
      self.flushQueueCapacity = flushQueueCapacity
      self.dmaAddressBits = dmaAddressBits
    }
  }

  public let configuration: Configuration
  let pageTableFactory: IOPageTableFactory

  var devicesByBDF: [BDF: DeviceState] = [:]
  var groupsByID: [GroupID: GroupState] = [:]
  var groupByKey: [GroupKey: GroupID] = [:]
  var nextGroupID: UInt32 = 0
  var nextDomainID: UInt32 = 1

  public internal(set) var pasidAllocator: GlobalPASIDAllocator
  public internal(set) var faultQueue: FaultQueue
  /// SVA: the PASID of each bound process, its SVA domain and its bonds.
  var addressSpaces: [AddressSpaceID: BoundAddressSpace] = [:]
  /// Kernel DMA PASIDs handed out by enableKernelDMAPASID, per device.
  var kernelDMAPASIDs: [BDF: [PASID]] = [:]

  /// The IOTLB every translation goes through, tagged by domain and PASID.
  public let iotlb: IOTLB
  /// The MSI doorbell window, never handed out as a DMA IOVA (iova_reserve_iommu_regions).
  public static let msiWindow = IOVA(0xFEE0_0000)..<IOVA(0xFEF0_0000)

  /// IOTLB invalidations requested because a shared CPU page table changed, oldest first; the most
  /// recent ``invalidationLogLimit`` are kept (all are applied to the IOTLB).
  public internal(set) var iotlbInvalidations: [IOTLBInvalidation] = []
  public static let invalidationLogLimit = 1024
  /// Called for every invalidation as it is requested (the IOTLB is wired in here later).
  public var iotlbInvalidationHook: ((IOTLBInvalidation) -> Void)?

  /// EINVAL for a fault queue or IOTLB capacity < 1, a flush queue capacity < 1, a DMA width outside
  /// [32, 48], or a PASID limit outside [2, 2^20].
  public init(
    configuration: Configuration = Configuration(),
    pageTableFactory: @escaping IOPageTableFactory
  ) throws(IOMMUError) {
    guard configuration.iotlbCapacity >= 1, configuration.flushQueueCapacity >= 1 else {
      throw IOMMUError(.EINVAL, "IOTLB and flush queue capacities must be at least 1")
    }
    guard (32...48).contains(configuration.dmaAddressBits) else {
      throw IOMMUError(.EINVAL, "DMA address width \(configuration.dmaAddressBits) is outside 32...48")
    }
    self.configuration = configuration
    self.pageTableFactory = pageTableFactory
    self.pasidAllocator = try GlobalPASIDAllocator(limit: configuration.pasidLimit)
    self.faultQueue = try FaultQueue(capacity: configuration.faultQueueCapacity)
    self.iotlb = IOTLB(capacity: configuration.iotlbCapacity)
  }

  /// A core whose paging domains use Cove's 4-level radix page table, with table pages in `memory`.
  public convenience init(configuration: Configuration = Configuration(), tableMemory: TablePagePool)
    throws(IOMMUError)
  {
    try self.init(configuration: configuration) { _ throws(IOMMUError) in
      try RadixIOPageTable(memory: tableMemory)
    }
  }

  deinit {
    for bound in addressSpaces.values { bound.space.removeObserver(ObjectIdentifier(self)) }
  }

  // MARK: Topology → groups

  /// Probes a device (Linux iommu_probe_device → pci_device_group, iommu_setup_default_domain).
  ///
  /// The device joins the group it cannot be isolated from: everything below the topmost port on
  /// its path without ACS shares one group; functions of a multi-function device without ACS share
  /// one; a requester-ID alias shares its target's. Otherwise it gets a new group with a default
  /// domain chosen by ``defaultDomainType(for:)``.
  ///
  /// A device joining an existing group (hotplug) inherits its current domain and its PASID
  /// attachments, SVA bonds included (SEMANTICS.md §4; a hotplugged device sees everything already
  /// mapped, as for classic DMA).
  ///
  /// - EEXIST: already registered. EINVAL: maxPASID > 2^20, an alias to itself, or the device cannot
  ///   live in the group: it needs identity or is untrusted and the group's default domain does not
  ///   fit (iommu_get_default_domain_type "refusing to probe"), it needs identity and the group is
  ///   behind its blocking domain (__iommu_device_set_domain), or the group has PASIDs attached that
  ///   the device cannot carry. ENODEV: the alias is not registered.
  public func addDevice(_ description: DeviceDescription) throws(IOMMUError) {
    let bdf = description.bdf
    guard devicesByBDF[bdf] == nil else { throw IOMMUError(.EEXIST, "\(bdf) is already registered") }
    guard description.maxPASID <= PASID.limit else {
      throw IOMMUError(.EINVAL, "\(bdf): max PASID \(description.maxPASID) > 2^20")
    }
    let key: GroupKey
    if let alias = description.requesterIDAlias {
      guard alias != bdf else { throw IOMMUError(.EINVAL, "\(bdf) cannot alias itself") }
      guard let target = devicesByBDF[alias] else {
        throw IOMMUError(.ENODEV, "\(bdf): requester-ID alias \(alias) is not registered")
      }
      key = groupsByID[target.group]!.key
    } else {
      key = GroupKey(description)
    }

    if let groupID = groupByKey[key], let group = groupsByID[groupID] {
      try checkJoin(description, group)
      group.devices.append(bdf)
      devicesByBDF[bdf] = DeviceState(description: description, group: groupID)
      return
    }

    let groupID = GroupID(rawValue: nextGroupID)
    let defaultType = try defaultDomainType(for: [description])
    let defaultDomain = try makeDomain(defaultType)
    nextGroupID += 1
    let group = GroupState(id: groupID, key: key, device: bdf, defaultDomain: defaultDomain)
    groupsByID[groupID] = group
    groupByKey[key] = groupID
    devicesByBDF[bdf] = DeviceState(description: description, group: groupID)
  }

  /// Removes a device (Linux iommu_release_device). The driver core unbinds drivers first, so:
  /// EBUSY while a driver is bound, a user claim or a kernel DMA PASID of this device is held, or if
  /// it is the last device of a group that still has PASIDs attached. ENODEV if unknown. An emptied
  /// group goes away.
  public func removeDevice(_ bdf: BDF) throws(IOMMUError) {
    let device = try device(bdf)
    guard device.driver == nil, device.kernelUses == 0 else {
      throw IOMMUError(.EBUSY, "\(bdf) still has a kernel driver bound")
    }
    guard device.userClaims == 0 else { throw IOMMUError(.EBUSY, "\(bdf) is still claimed by a user") }
    guard kernelDMAPASIDs[bdf, default: []].isEmpty else {
      throw IOMMUError(.EBUSY, "\(bdf) still has kernel DMA PASIDs enabled")
    }
    let group = groupsByID[device.group]!
    if group.devices.count == 1 {
      guard group.pasids.isEmpty else {
        throw IOMMUError(.EBUSY, "\(bdf): \(group.id) still has PASIDs attached")
      }
      groupsByID[group.id] = nil
      groupByKey[group.key] = nil
    } else {
      group.devices.removeAll { $0 == bdf }
    }
    devicesByBDF[bdf] = nil
    kernelDMAPASIDs[bdf] = nil
  }

  /// The group of a registered device (iommu_group_get), nil if unknown.
  public func group(of bdf: BDF) -> GroupID? { devicesByBDF[bdf]?.group }

  /// The devices of a group in probe order; empty if the group does not exist.
  public func devices(in group: GroupID) -> [BDF] { groupsByID[group]?.devices ?? [] }

  /// Every group, by ID.
  public var groups: [GroupID] { groupsByID.keys.sorted { $0.rawValue < $1.rawValue } }

  /// The description a device was registered with.
  public func description(of bdf: BDF) -> DeviceDescription? { devicesByBDF[bdf]?.description }

  // MARK: Default domain choice

  /// The default domain type for a group holding `devices` (Linux iommu_get_default_domain_type and
  /// iommu_subsys_init, SEMANTICS.md §2):
  /// - an untrusted device forces a strict `.dma` domain;
  /// - a device that requires identity gets `.identity`, unless the group is untrusted or the
  ///   platform is confidential: then EINVAL, the group cannot be given a default domain (Linux
  ///   refuses to probe the untrusted case; Cove refuses the confidential one, since a confidential
  ///   guest never gets identity);
  /// - otherwise `passthrough` gives identity (never on a confidential platform), and translation
  ///   is `.dma` when strict, `.dmaFQ` when lazy.
  public func defaultDomainType(for devices: [DeviceDescription]) throws(IOMMUError) -> DomainType {
    let untrusted = devices.contains { $0.untrusted }
    if let needsIdentity = devices.first(where: { $0.requiresIdentity }) {
      if untrusted {
        throw IOMMUError(
          .EINVAL, "\(needsIdentity.bdf) requires identity in a group with an untrusted device")
      }
      if configuration.confidentialPlatform {
        throw IOMMUError(
          .EINVAL, "\(needsIdentity.bdf) requires identity, never given on a confidential platform")
      }
      return .identity
    }
    if untrusted { return .dma }
    if configuration.passthrough && !configuration.confidentialPlatform { return .identity }
    return configuration.strict ? .dma : .dmaFQ
  }

  // MARK: Internal helpers

  func device(_ bdf: BDF) throws(IOMMUError) -> DeviceState {
    guard let device = devicesByBDF[bdf] else { throw IOMMUError(.ENODEV, "\(bdf) is not registered") }
    return device
  }

  func groupState(_ id: GroupID) throws(IOMMUError) -> GroupState {
    guard let group = groupsByID[id] else { throw IOMMUError(.ENODEV, "\(id) does not exist") }
    return group
  }

  func groupState(of bdf: BDF) throws(IOMMUError) -> GroupState {
    groupsByID[try device(bdf).group]!
  }

  func descriptions(of group: GroupState) -> [DeviceDescription] {
    group.devices.map { devicesByBDF[$0]!.description }
  }

  func makeDomain(
    _ type: DomainType, parent: IOMMUDomain? = nil, addressSpace: ProcessAddressSpace? = nil
  ) throws(IOMMUError) -> IOMMUDomain {
    let table: (any IOPageTableProtocol)? = type.isPaging ? try pageTableFactory(type) : nil
    let id = DomainID(rawValue: nextDomainID)
    // A DMA API domain owns its IOVA space: dma-iommu's allocator, strict or with a flush queue.
    var dma: DMAMappingLayer?
    if let table, type == .dma || type == .dmaFQ {
      dma = try DMAMappingLayer(
        domainID: id, pageTable: table, iotlb: iotlb,
        mode: type == .dma ? .strict : .lazy(queueCapacity: configuration.flushQueueCapacity),
        aperture: IOVA(0)..<IOVA(1 << 48), reserved: [Self.msiWindow],
        dmaLimit: IOVA(1 << UInt64(configuration.dmaAddressBits)))
    }
    nextDomainID += 1
    let domain = IOMMUDomain(
      id: id, type: type, owner: ObjectIdentifier(self), pageTable: table, parent: parent,
      addressSpace: addressSpace, iotlb: iotlb, dma: dma)
    parent?.nestedChildren.append(id)
    return domain
  }

  /// The checks a hotplugged device must pass to join `group` (see ``addDevice(_:)``).
  private func checkJoin(_ description: DeviceDescription, _ group: GroupState) throws(IOMMUError) {
    let bdf = description.bdf
    let wanted = try defaultDomainType(for: descriptions(of: group) + [description])
    guard wanted == group.defaultDomain.type else {
      throw IOMMUError(
        .EINVAL,
        "\(bdf) needs a \(wanted) default domain but \(group.id) has \(group.defaultDomain.type)")
    }
    if description.requiresIdentity && group.domain.type == .blocked {
      throw IOMMUError(.EINVAL, "\(bdf) requires identity but \(group.id) is blocked")
    }
    for pasid in group.pasids.keys {
      guard pasid.rawValue < description.maxPASID, description.acsOnPASIDPath else {
        throw IOMMUError(.EINVAL, "\(bdf) cannot carry \(pasid) attached to \(group.id)")
      }
    }
  }
}

/// What makes devices inseparable (pci_device_group): the topmost port without ACS on the path, the
/// slot of a multi-function device without ACS, or the function itself.
enum GroupKey: Hashable {
  case belowPort(BDF)
  case slot(segment: UInt16, bus: UInt8, device: UInt8)
  case function(BDF)

  init(_ description: DeviceDescription) {
    if let port = description.upstream.first(where: { !$0.hasACS }) {
      self = .belowPort(port.bdf)
    } else if description.functionIsolation == .multiFunctionWithoutACS {
      let bdf = description.bdf
      self = .slot(segment: bdf.segment, bus: bdf.bus, device: bdf.device)
    } else {
      self = .function(description.bdf)
    }
  }
}

final class DeviceState {
  let description: DeviceDescription
  let group: GroupID
  var driver: DriverDMA?
  /// iommu_device_use_default_domain calls not yet undone.
  var kernelUses = 0
  /// Per-device user claims (iommu_device_claim_dma_owner) not yet released.
  var userClaims = 0

  init(description: DeviceDescription, group: GroupID) {
    self.description = description
    self.group = group
  }
}

/// One PASID attachment of a group (an entry of Linux group->pasid_array).
struct PASIDAttachment {
  var domain: IOMMUDomain
  var bond: SVABond?
}

final class GroupState {
  let id: GroupID
  let key: GroupKey
  var devices: [BDF]
  let defaultDomain: IOMMUDomain
  var blockingDomain: IOMMUDomain?
  /// The domain the group's requests without PASID go through (group->domain).
  var domain: IOMMUDomain
  var ownerCount = 0
  var owner: OwnerCookie?
  var pasids: [PASID: PASIDAttachment] = [:]

  init(id: GroupID, key: GroupKey, device: BDF, defaultDomain: IOMMUDomain) {
    self.id = id
    self.key = key
    self.devices = [device]
    self.defaultDomain = defaultDomain
    self.domain = defaultDomain
  }
}
