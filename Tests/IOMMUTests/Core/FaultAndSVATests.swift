import IOMMU
import PCIe
import Testing

@Suite struct FaultQueueTests {
  let device = BDF(bus: 2, device: 0, function: 0)

  @Test func overflowIsCountedNeverSilent() throws {
    let core = try makeCore(.init(faultQueueCapacity: 2))
    try core.addDevice(DeviceDescription(device, maxPASID: 8))
    for page in 0..<5 {
      _ = core.translate(device: device, pasid: nil, iova: IOVA(UInt64(page) << 12), access: .read)
    }
    #expect(core.faultOverflowCount == 3)
    #expect(core.faultQueue.totalReported == 5)
    let faults = core.drainFaults()
    #expect(faults.map(\.address) == [IOVA(0), IOVA(0x1000)])
    #expect(faults[0].reason == .notMapped)
    #expect(faults[0].requesterID == device.requesterID)
    #expect(faults[0].pasid == nil)
    #expect(core.drainFaults().isEmpty)
    #expect(core.faultOverflowCount == 3)
    // Room again after draining.
    _ = core.translate(device: device, pasid: PASID(3), iova: IOVA(0), access: .write)
    let next = core.drainFaults()
    #expect(next.count == 1)
    #expect(next.first?.reason == .unknownPASID)
    #expect(next.first?.pasid == PASID(3))
    #expect(next.first?.access == .write)
  }

  @Test func unknownDevicesFault() throws {
    let core = try makeCore()
    guard case .failure(let fault) = core.translate(device: device, pasid: nil, iova: IOVA(0), access: .read)
    else {
      Issue.record("an unknown requester must fault")
      return
    }
    #expect(fault.reason == .unknownDevice)
  }
}

@Suite struct SVATests {
  let device = BDF(bus: 2, device: 0, function: 0)

  func boundCore() throws -> (IOMMUCore, ProcessAddressSpace, SVABond) {
    let core = try makeCore()
    try core.addDevice(DeviceDescription(device, maxPASID: 1 << 10))
    let space = ProcessAddressSpace(id: AddressSpaceID(rawValue: 7))
    try space.map(VirtualAddress(0x40_0000), to: PhysicalAddress(0x1_0000), writable: true)
    let bond = try core.svaBind(device: device, addressSpace: space)
    return (core, space, bond)
  }

  @Test func translationUsesTheProcessPageTables() throws {
    let (core, _, bond) = try boundCore()
    #expect(bond.pasid == PASID(1))
    let translation = try core.translate(
      device: device, pasid: bond.pasid, iova: IOVA(0x40_0123), access: .write
    ).get()
    #expect(translation.physical == PhysicalAddress(0x1_0123))
    #expect(bond.domain.iovaToPhys(IOVA(0x40_0000)) == PhysicalAddress(0x1_0000))
    // The RID still goes through the default DMA domain, where nothing is mapped.
    guard
      case .failure(let fault) = core.translate(
        device: device, pasid: nil, iova: IOVA(0x40_0000), access: .read)
    else {
      Issue.record("the RID must not see the process")
      return
    }
    #expect(fault.reason == .notMapped)
  }

  @Test func pageRequestsAreServedByTheFaultHandler() throws {
    let (core, space, bond) = try boundCore()
    var handled: [VirtualAddress] = []
    space.pageFaultHandler = { space, address, access in
      handled.append(address)
      if address.pageBase == VirtualAddress(0x50_0000) {
        try? space.map(address.pageBase, to: PhysicalAddress(0x2_0000), writable: access == .write)
      }
    }
    #expect(
      core.handlePageRequest(device: device, pasid: bond.pasid, address: IOVA(0x40_0000), access: .write)
        == .success)
    #expect(handled.isEmpty, "a present page needs no fault handling")
    #expect(
      core.handlePageRequest(device: device, pasid: bond.pasid, address: IOVA(0x50_0008), access: .write)
        == .success)
    #expect(
      core.handlePageRequest(device: device, pasid: bond.pasid, address: IOVA(0x60_0000), access: .read)
        == .invalid)
    #expect(handled == [VirtualAddress(0x50_0008), VirtualAddress(0x60_0000)])
    // No PASID, a PASID not bound, an unknown device: INVALID.
    #expect(
      core.handlePageRequest(device: device, pasid: nil, address: IOVA(0x40_0000), access: .read) == .invalid)
    #expect(
      core.handlePageRequest(device: device, pasid: PASID(2), address: IOVA(0x40_0000), access: .read)
        == .invalid)
    #expect(
      core.handlePageRequest(
        device: BDF(bus: 9, device: 0, function: 0), pasid: bond.pasid, address: IOVA(0x40_0000),
        access: .read)
        == .invalid)
  }

  @Test func exitBlocksUntilUnbind() throws {
    let (core, space, bond) = try boundCore()
    space.exit()
    guard
      case .failure(let fault) = core.translate(
        device: device, pasid: bond.pasid, iova: IOVA(0x40_0000), access: .read)
    else {
      Issue.record("an exited process must not be reachable")
      return
    }
    #expect(fault.reason == .addressSpaceExited)
    #expect(try core.pasidTable(of: device)[bond.pasid] === bond.domain, "the PASID entry stays")
    #expect(
      core.handlePageRequest(device: device, pasid: bond.pasid, address: IOVA(0x40_0000), access: .read)
        == .invalid)
    #expect(errno { _ = try core.svaBind(device: device, addressSpace: space) } == .EINVAL)
    try core.svaUnbind(bond)
    #expect(try core.pasidTable(of: device).isEmpty)
    #expect(core.pasid(of: space) == nil)
    #expect(!core.pasidAllocator.isAllocated(bond.pasid))
  }

  @Test func cpuPageTableChangesInvalidateTheIOTLB() throws {
    let (core, space, bond) = try boundCore()
    var hooked: [IOTLBInvalidation] = []
    core.iotlbInvalidationHook = { hooked.append($0) }
    try space.map(VirtualAddress(0x70_0000), to: PhysicalAddress(0x3_0000), writable: true)
    #expect(core.iotlbInvalidations.isEmpty, "a new page needs no invalidation")
    space.writeProtect(VirtualAddress(0x70_0000), size: 0x1000)
    space.unmap(VirtualAddress(0x40_0000), size: 0x2000)
    space.unmap(VirtualAddress(0x90_0000), size: 0x1000)  // nothing there: nothing to invalidate
    space.exit()
    let expected = [
      IOTLBInvalidation(
        domain: bond.domain.id, group: bond.group, pasid: bond.pasid,
        scope: .range(start: VirtualAddress(0x70_0000), size: 0x1000)),
      IOTLBInvalidation(
        domain: bond.domain.id, group: bond.group, pasid: bond.pasid,
        scope: .range(start: VirtualAddress(0x40_0000), size: 0x2000)),
      IOTLBInvalidation(domain: bond.domain.id, group: bond.group, pasid: bond.pasid, scope: .all),
    ]
    #expect(core.iotlbInvalidations == expected)
    #expect(hooked == expected)
    #expect(core.drainIOTLBInvalidations() == expected)
    #expect(core.iotlbInvalidations.isEmpty)
  }

  @Test func unboundProcessesAreNoLongerWatched() throws {
    let (core, space, bond) = try boundCore()
    try core.svaUnbind(bond)
    space.unmap(VirtualAddress(0x40_0000), size: 0x1000)
    #expect(core.iotlbInvalidations.isEmpty)
  }

  @Test func oneProcessOnePASIDAcrossDevices() throws {
    let (core, space, bond) = try boundCore()
    let other = BDF(bus: 3, device: 0, function: 0)
    try core.addDevice(DeviceDescription(other, maxPASID: 16))
    let second = try core.svaBind(device: other, addressSpace: space)
    #expect(second !== bond)
    #expect(second.pasid == bond.pasid)
    try core.svaUnbind(bond)
    #expect(core.pasid(of: space) == bond.pasid, "still used by the other bond")
    try core.svaUnbind(second)
    #expect(core.pasid(of: space) == nil)
  }
}

@Suite struct KernelDMAPASIDTests {
  let device = BDF(bus: 2, device: 0, function: 0)

  @Test func thePASIDSharesTheRIDsDomain() throws {
    let core = try makeCore()
    try core.addDevice(DeviceDescription(device, maxPASID: 64))
    try core.bindDriver(device, dma: .dmaAPI)
    let group = try #require(core.group(of: device))
    let dmaDomain = try core.currentDomain(of: group)
    // The DMA API maps an IOVA in the RID's domain; the same IOVA works with the PASID.
    try dmaDomain.map(IOVA(0x10_0000), to: PhysicalAddress(0xABC_D000), size: 0x1000, protection: .readWrite)
    let pasid = try core.enableKernelDMAPASID(device)
    #expect(try core.pasidTable(of: device)[pasid] === dmaDomain)
    let withPASID = core.translate(device: device, pasid: pasid, iova: IOVA(0x10_0010), access: .write)
    let withoutPASID = core.translate(device: device, pasid: nil, iova: IOVA(0x10_0010), access: .write)
    #expect(try withPASID.get() == withoutPASID.get())
    #expect(core.pasidAllocator.isAllocated(pasid))
    // Another kernel driver in the group cannot probe while the PASID is attached.
    #expect(errno { try core.unbindDriver(device) } == .EBUSY)
    try core.disableKernelDMAPASID(device, pasid: pasid)
    #expect(!core.pasidAllocator.isAllocated(pasid))
    #expect(errno { try core.disableKernelDMAPASID(device, pasid: pasid) } == .EINVAL)
    try core.unbindDriver(device)
  }

  @Test func enospcFreesNothingAndLeavesNoAttachment() throws {
    let core = try makeCore()
    try core.addDevice(DeviceDescription(device, maxPASID: 2))
    let first = try core.enableKernelDMAPASID(device)
    #expect(first == PASID(1))
    #expect(errno { _ = try core.enableKernelDMAPASID(device) } == .ENOSPC)
    #expect(try core.pasidTable(of: device).count == 1)
  }
}
