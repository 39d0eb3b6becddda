import IOMMU
import PCIe
import Testing

@Suite struct TopologyTests {
  let rootPort = BDF(bus: 0, device: 1, function: 0)
  let switchPort = BDF(bus: 1, device: 0, function: 0)

  func endpoint(_ bus: UInt8, _ function: UInt8 = 0) -> BDF { BDF(bus: bus, device: 0, function: function) }

  @Test func devicesBelowAPortWithoutACSShareAGroup() throws {
    let core = try makeCore()
    let path = [BridgeInfo(rootPort, hasACS: true), BridgeInfo(switchPort, hasACS: false)]
    try core.addDevice(DeviceDescription(endpoint(2), upstream: path))
    try core.addDevice(DeviceDescription(endpoint(3), upstream: path))
    let group = try #require(core.group(of: endpoint(2)))
    #expect(core.group(of: endpoint(3)) == group)
    #expect(core.devices(in: group) == [endpoint(2), endpoint(3)])
  }

  @Test func theTopmostPortWithoutACSDecides() throws {
    let core = try makeCore()
    // Root port lacks ACS: everything below it shares, even below different (ACS) switch ports.
    let portA = BDF(bus: 1, device: 1, function: 0)
    let portB = BDF(bus: 1, device: 2, function: 0)
    try core.addDevice(
      DeviceDescription(
        endpoint(2), upstream: [BridgeInfo(rootPort, hasACS: false), BridgeInfo(portA, hasACS: true)]))
    try core.addDevice(
      DeviceDescription(
        endpoint(3), upstream: [BridgeInfo(rootPort, hasACS: false), BridgeInfo(portB, hasACS: true)]))
    #expect(core.group(of: endpoint(2)) == core.group(of: endpoint(3)))
  }

  @Test func acsOnEveryPortIsolates() throws {
    let core = try makeCore()
    let path = [BridgeInfo(rootPort, hasACS: true), BridgeInfo(switchPort, hasACS: true)]
    try core.addDevice(DeviceDescription(endpoint(2), upstream: path))
    try core.addDevice(DeviceDescription(endpoint(3), upstream: path))
    #expect(core.group(of: endpoint(2)) != core.group(of: endpoint(3)))
    #expect(core.groups.count == 2)
  }

  @Test func multiFunctionWithoutACSShares() throws {
    let core = try makeCore()
    for function: UInt8 in 0...2 {
      try core.addDevice(
        DeviceDescription(endpoint(4, function), functionIsolation: .multiFunctionWithoutACS))
    }
    // A sibling with ACS, and a function in another slot, are isolated.
    try core.addDevice(DeviceDescription(endpoint(4, 3), functionIsolation: .multiFunctionWithACS))
    try core.addDevice(
      DeviceDescription(
        BDF(bus: 4, device: 1, function: 0), functionIsolation: .multiFunctionWithoutACS))
    let shared = try #require(core.group(of: endpoint(4, 0)))
    #expect(core.devices(in: shared).count == 3)
    #expect(core.group(of: endpoint(4, 3)) != shared)
    #expect(core.group(of: BDF(bus: 4, device: 1, function: 0)) != shared)
    #expect(core.description(of: endpoint(4, 0))?.acsOnPASIDPath == false)
    #expect(core.description(of: endpoint(4, 3))?.acsOnPASIDPath == true)
  }

  @Test func requesterIDAliasJoinsItsTarget() throws {
    let core = try makeCore()
    #expect(throws: IOMMUError(.ENODEV, "05:00.0: requester-ID alias 02:00.0 is not registered")) {
      try core.addDevice(DeviceDescription(endpoint(5), requesterIDAlias: endpoint(2)))
    }
    try core.addDevice(DeviceDescription(endpoint(2)))
    try core.addDevice(DeviceDescription(endpoint(5), requesterIDAlias: endpoint(2)))
    #expect(core.group(of: endpoint(5)) == core.group(of: endpoint(2)))
  }

  @Test func hotplugInheritsTheCurrentDomainAndOwnership() throws {
    let core = try makeCore()
    let path = [BridgeInfo(switchPort, hasACS: false)]
    try core.addDevice(DeviceDescription(endpoint(2), upstream: path))
    let group = try #require(core.group(of: endpoint(2)))
    try core.claimDMAOwner(device: endpoint(2), cookie: OwnerCookie(rawValue: 9))
    let domain = try core.allocateDomain(.paging)
    try domain.map(IOVA(0x1000), to: PhysicalAddress(0x8000), size: 0x1000, protection: .readWrite)
    try core.attachGroup(domain, to: group)

    try core.addDevice(DeviceDescription(endpoint(3), upstream: path))
    #expect(core.group(of: endpoint(3)) == group)
    #expect(try core.currentDomain(of: group) === domain)
    #expect(try core.ownership(of: group) == .user(OwnerCookie(rawValue: 9), users: 1))
    // The newcomer reaches what is already mapped, as classic DMA does.
    let translation = try core.translate(device: endpoint(3), pasid: nil, iova: IOVA(0x1008), access: .write)
      .get()
    #expect(translation.physical == PhysicalAddress(0x8008))
  }

  @Test func removeDeviceAndEmptyGroups() throws {
    let core = try makeCore()
    try core.addDevice(DeviceDescription(endpoint(2)))
    #expect(throws: IOMMUError.self) { try core.addDevice(DeviceDescription(endpoint(2))) }
    let group = try #require(core.group(of: endpoint(2)))
    try core.bindDriver(endpoint(2), dma: .dmaAPI)
    #expect(
      performing: { try core.removeDevice(endpoint(2)) }, throws: { ($0 as? IOMMUError)?.errno == .EBUSY })
    try core.unbindDriver(endpoint(2))
    try core.removeDevice(endpoint(2))
    #expect(core.group(of: endpoint(2)) == nil)
    #expect(core.devices(in: group).isEmpty)
    #expect(core.groups.isEmpty)
    #expect(
      performing: { try core.removeDevice(endpoint(2)) }, throws: { ($0 as? IOMMUError)?.errno == .ENODEV })
  }

  @Test func maxPASIDIsBounded() throws {
    let core = try makeCore()
    #expect(
      performing: {
        try core.addDevice(DeviceDescription(endpoint(2), maxPASID: PASID.limit + 1))
      }, throws: { ($0 as? IOMMUError)?.errno == .EINVAL })
  }
}
