import IOMMU
import PCIe
import Testing

func errno(_ body: () throws -> Void) -> Errno? {
  do {
    try body()
    return nil
  } catch let error as IOMMUError {
    return error.errno
  } catch {
    return Errno(rawValue: -1)
  }
}

@Suite struct OwnershipTests {
  let port = BDF(bus: 1, device: 0, function: 0)
  let first = BDF(bus: 2, device: 0, function: 0)
  let second = BDF(bus: 3, device: 0, function: 0)

  func sharedGroupCore() throws -> IOMMUCore {
    let core = try makeCore()
    try core.addDevice(DeviceDescription(first, upstream: [BridgeInfo(port, hasACS: false)]))
    try core.addDevice(DeviceDescription(second, upstream: [BridgeInfo(port, hasACS: false)]))
    return core
  }

  @Test func kernelUsersAreCounted() throws {
    let core = try sharedGroupCore()
    let group = try #require(core.group(of: first))
    try core.bindDriver(first, dma: .dmaAPI)
    try core.deviceUseDefaultDomain(second)
    #expect(try core.ownership(of: group) == .kernel(users: 2))
    try core.unbindDriver(first)
    #expect(try core.ownership(of: group) == .kernel(users: 1))
    #expect(errno { try core.deviceUnuseDefaultDomain(first) } == .EINVAL)
    try core.deviceUnuseDefaultDomain(second)
    #expect(try core.ownership(of: group) == .unowned)
  }

  @Test func userClaimsAreSharedByCookieAndReleasedInOrder() throws {
    let core = try sharedGroupCore()
    let group = try #require(core.group(of: first))
    let cookie = OwnerCookie(rawValue: 42)
    try core.claimDMAOwner(device: first, cookie: cookie)
    try core.claimDMAOwner(device: second, cookie: cookie)
    #expect(try core.ownership(of: group) == .user(cookie, users: 2))
    #expect(try core.currentDomain(of: group) === core.blockingDomain(of: group))
    // A kernel driver that does no DMA coexists with the user; one using the DMA API does not.
    try core.bindDriver(second, dma: .noDMA)
    #expect(errno { try core.deviceUseDefaultDomain(second) } == .EBUSY)

    try core.releaseDMAOwner(device: first)
    #expect(try core.ownership(of: group) == .user(cookie, users: 1))
    #expect(errno { try core.releaseDMAOwner(device: first) } == .EINVAL)
    try core.releaseDMAOwner(device: second)
    #expect(try core.ownership(of: group) == .unowned)
    #expect(try core.currentDomain(of: group) === core.defaultDomain(of: group))
  }

  @Test func groupReleaseClearsEveryClaim() throws {
    let core = try sharedGroupCore()
    let group = try #require(core.group(of: first))
    try core.claimDMAOwner(device: first, cookie: OwnerCookie(rawValue: 1))
    try core.claimDMAOwner(device: second, cookie: OwnerCookie(rawValue: 1))
    try core.releaseGroupDMAOwner(group)
    #expect(try core.ownership(of: group) == .unowned)
    #expect(errno { try core.releaseDMAOwner(device: first) } == .EINVAL)
    try core.removeDevice(first)  // no claim left to block removal
  }
}

@Suite struct DefaultDomainTests {
  let device = BDF(bus: 2, device: 0, function: 0)

  func defaultType(_ configuration: IOMMUCore.Configuration, _ description: DeviceDescription) throws
    -> DomainType
  {
    let core = try makeCore(configuration)
    try core.addDevice(description)
    return try core.defaultDomain(of: #require(core.group(of: description.bdf))).type
  }

  @Test func untrustedForcesStrictDMA() throws {
    let untrusted = DeviceDescription(device, untrusted: true)
    #expect(try defaultType(.init(), untrusted) == .dma)
    #expect(try defaultType(.init(passthrough: true), untrusted) == .dma)
    #expect(try defaultType(.init(confidentialPlatform: true), untrusted) == .dma)
  }

  @Test func confidentialNeverIdentity() throws {
    let plain = DeviceDescription(device)
    #expect(try defaultType(.init(passthrough: true), plain) == .identity)
    #expect(try defaultType(.init(passthrough: true, confidentialPlatform: true), plain) == .dmaFQ)
    #expect(
      try defaultType(.init(passthrough: true, strict: true, confidentialPlatform: true), plain) == .dma)
    let core = try makeCore(.init(confidentialPlatform: true))
    #expect(errno { try core.addDevice(DeviceDescription(device, requiresIdentity: true)) } == .EINVAL)
  }

  @Test func identityOnlyWhenRequiredAndAllowed() throws {
    #expect(try defaultType(.init(), DeviceDescription(device)) == .dmaFQ)
    #expect(try defaultType(.init(), DeviceDescription(device, requiresIdentity: true)) == .identity)
    let core = try makeCore()
    #expect(
      errno { try core.addDevice(DeviceDescription(device, requiresIdentity: true, untrusted: true)) }
        == .EINVAL)
  }

  @Test func configurationIsValidated() {
    #expect(errno { _ = try makeCore(.init(faultQueueCapacity: 0)) } == .EINVAL)
    #expect(errno { _ = try makeCore(.init(pasidLimit: 1)) } == .EINVAL)
    #expect(errno { _ = try makeCore(.init(pasidLimit: PASID.limit + 1)) } == .EINVAL)
  }
}

@Suite struct DomainTests {
  @Test func translationByDomainType() throws {
    let core = try makeCore()
    let identity = try core.allocateDomain(.identity)
    let blocked = try core.allocateDomain(.blocked)
    #expect(identity.iovaToPhys(IOVA(0x1234_5678)) == PhysicalAddress(0x1234_5678))
    #expect(blocked.iovaToPhys(IOVA(0x1000)) == nil)
    #expect(errno { _ = try blocked.unmap(IOVA(0), size: 0x1000) } == .EINVAL)

    let paging = try core.allocateDomain(.paging)
    try paging.map(IOVA(0x10_0000), to: PhysicalAddress(0x4000_0000), size: 0x2000, protection: .readWrite)
    #expect(paging.iovaToPhys(IOVA(0x10_1010)) == PhysicalAddress(0x4000_1010))
    #expect(try paging.unmap(IOVA(0x10_0000), size: 0x4000) == 0x2000)
    #expect(paging.iovaToPhys(IOVA(0x10_0000)) == nil)
  }

  @Test func nestedTranslatesThroughBothStages() throws {
    let core = try makeCore()
    let stage2 = try core.allocateDomain(.paging)
    try stage2.map(IOVA(0x8000), to: PhysicalAddress(0x9_0000), size: 0x1000, protection: .read)
    let nested = try core.allocateDomain(.nested, parent: stage2)
    try nested.map(IOVA(0x1000), to: PhysicalAddress(0x8000), size: 0x1000, protection: .readWrite)
    #expect(nested.iovaToPhys(IOVA(0x1004)) == PhysicalAddress(0x9_0004))

    let device = BDF(bus: 2, device: 0, function: 0)
    try core.addDevice(DeviceDescription(device))
    try core.attachDevice(nested, to: device)
    // Stage 2 grants read only, so the combined right is read only.
    guard
      case .failure(let fault) = core.translate(
        device: device, pasid: nil, iova: IOVA(0x1000), access: .write)
    else {
      Issue.record("write through a read-only stage 2 must fault")
      return
    }
    #expect(fault.reason == .permission)
    #expect(errno { _ = try core.allocateDomain(.nested) } == .EINVAL)
    #expect(errno { _ = try core.allocateDomain(.paging, parent: stage2) } == .EINVAL)
  }

  @Test func domainsOfAnotherCoreAreRefused() throws {
    let core = try makeCore()
    let other = try makeCore()
    let device = BDF(bus: 2, device: 0, function: 0)
    try core.addDevice(DeviceDescription(device, maxPASID: 8))
    let foreign = try other.allocateDomain(.paging)
    #expect(errno { try core.attachDevice(foreign, to: device) } == .EINVAL)
    #expect(errno { try core.attachDevicePASID(foreign, to: device, pasid: PASID(1)) } == .EINVAL)
  }
}
