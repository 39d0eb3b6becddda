import CoveGuestDrivers
import GuestABI
import GuestKernel
import HostPlatform
import IOMMU
import PCIe
import Testing

/// The driver core (SEMANTICS.md §1): match, probe/remove, manual bind and unbind, autoprobe,
/// deferred probe, DMA ownership at probe, user-owned devices.
@Suite struct DriverCoreTests {
  static func errno(_ body: () throws -> Void) -> Errno? {
    do { try body() } catch let error as KernelError { return error.errno } catch { return nil }
    return nil
  }

  /// A driver whose probe does what the test says.
  final class ScriptedDriver: PCIDriver {
    let name: String
    let idTable: [PCIDeviceID]
    let dmaUse: DriverDMA
    var probeResult: (PCIDevice, GuestKernel) throws(KernelError) -> Void = { _, _ in }
    private(set) var probes = 0
    private(set) var removes = 0
    init(_ name: String, vendor: UInt16 = CoveDMADriver.vendorID, dma: DriverDMA = .dmaAPI) {
      self.name = name
      idTable = [PCIDeviceID(vendor: vendor, device: nil)]
      dmaUse = dma
    }
    func probe(_ device: PCIDevice, kernel: GuestKernel) throws(KernelError) {
      probes += 1
      try probeResult(device, kernel)
    }
    func remove(_ device: PCIDevice, kernel: GuestKernel) { removes += 1 }
  }

  @Test func enumerationFindsTheFunctionAsThePlatformAssignedIt() throws {
    let rig = try GuestRig()
    #expect(rig.kernel.devices.map(\.function) == [GuestRig.function])
    let device = rig.pci
    #expect(device.vendorID == 0x1B36 && device.deviceID == 0x0C0E)
    #expect(device.bars == rig.vmm.bars(of: GuestRig.function))
    #expect(device.hasACS)
  }

  @Test func autoprobeBindsAtRegistrationAndOffItWaits() throws {
    let on = try GuestRig(options: KernelOptions(autoprobe: true))
    try on.kernel.register(CoveDMADriver())
    #expect(on.pci.driver?.name == "cove-dma")
    #expect(on.kernel.events.contains(.driverBound(GuestRig.function, driver: "cove-dma")))

    let off = try GuestRig()
    try off.kernel.register(CoveDMADriver())
    #expect(off.pci.driver == nil)
    off.kernel.autoprobe = true
    try off.kernel.attach(off.pci)
    #expect(off.pci.driver?.name == "cove-dma")
  }

  @Test func manualBindAndUnbindFollowTheRules() throws {
    let rig = try GuestRig()
    let other = ScriptedDriver("other", vendor: 0x8086)
    try rig.kernel.register(CoveDMADriver())
    try rig.kernel.register(other)
    #expect(Self.errno { try rig.kernel.register(CoveDMADriver()) } == .EEXIST)
    #expect(Self.errno { try rig.kernel.bind(rig.pci, driver: "other") } == .ENODEV, "does not match")
    #expect(Self.errno { try rig.kernel.bind(rig.pci, driver: "missing") } == .ENODEV)
    #expect(Self.errno { try rig.kernel.unbind(rig.pci) } == .ENODEV, "nothing bound")
    try rig.kernel.bind(rig.pci, driver: "cove-dma")
    #expect(Self.errno { try rig.kernel.bind(rig.pci, driver: "cove-dma") } == .EBUSY)
    try rig.kernel.unregister(driver: "cove-dma")
    #expect(rig.pci.driver == nil)
    #expect(
      rig.kernel.events.last
        == .driverUnbound(GuestRig.function, driver: "cove-dma", reason: "driver unregistered"))
  }

  @Test func aFailedProbeLeavesNothingBoundOrMapped() throws {
    let rig = try GuestRig()
    let driver = ScriptedDriver("leaky")
    driver.probeResult = { device, kernel throws(KernelError) in
      try kernel.dmaSetMask(device, bits: 64)
      _ = try kernel.allocCoherent(device, size: 4096)
      throw KernelError(.EIO, "hardware missing")
    }
    try rig.kernel.register(driver)
    let allocated = rig.kernel.memory.allocatedPages
    #expect(Self.errno { try rig.kernel.bind(rig.pci, driver: "leaky") } == .EIO)
    #expect(rig.pci.driver == nil)
    #expect(rig.kernel.memory.allocatedPages == allocated, "the coherent page went back")
    #expect(rig.kernel.events.contains(.probeFailed(GuestRig.function, driver: "leaky", errno: .EIO)))
    #expect(rig.kernel.debug.reports.map(\.kind) == [.leaked])
  }

  @Test func aDeferredProbeIsRetriedWhenAnotherProbeSucceeds() throws {
    let rig = try GuestRig(functions: [GuestRig.function, BDF(bus: 3, device: 0, function: 0).requesterID])
    let dsm = rig.kernel.device(BDF(bus: 3, device: 0, function: 0).requesterID)!
    let supplier = ScriptedDriver("supplier")
    let consumer = ScriptedDriver("consumer")
    consumer.probeResult = { _, kernel throws(KernelError) in
      guard kernel.device(BDF(bus: 3, device: 0, function: 0).requesterID)?.driver != nil else {
        throw KernelError(.EPROBE_DEFER, "waiting for the supplier")
      }
    }
    try rig.kernel.register(consumer)
    try rig.kernel.register(supplier)
    #expect(Self.errno { try rig.kernel.bind(rig.pci, driver: "consumer") } == .EPROBE_DEFER)
    #expect(rig.kernel.deferredProbes == [GuestRig.function: "consumer"])
    try rig.kernel.bind(dsm, driver: "supplier")
    #expect(rig.pci.driver?.name == "consumer")
    #expect(rig.kernel.deferredProbes.isEmpty)
    #expect(consumer.probes == 2)
  }

  @Test func userOwnershipAndKernelDriversExcludeEachOther() throws {
    let rig = try GuestRig(viommu: true)
    let cookie = OwnerCookie(rawValue: 7)
    try rig.kernel.claimDMAOwner(rig.pci, cookie: cookie)
    try rig.kernel.register(CoveDMADriver())
    #expect(Self.errno { try rig.kernel.bind(rig.pci, driver: "cove-dma") } == .EBUSY)
    let stub = ScriptedDriver("stub", dma: .noDMA)
    try rig.kernel.register(stub)
    try rig.kernel.bind(rig.pci, driver: "stub")
    try rig.kernel.unbind(rig.pci)
    #expect(Self.errno { try rig.kernel.claimDMAOwner(rig.pci, cookie: OwnerCookie(rawValue: 8)) } == .EPERM)
    try rig.kernel.releaseDMAOwner(rig.pci)
    try rig.kernel.bind(rig.pci, driver: "cove-dma")
    #expect(Self.errno { try rig.kernel.claimDMAOwner(rig.pci, cookie: cookie) } == .EPERM)
  }

  @Test func aClaimTheVIOMMURefusesIsGivenBack() throws {
    var host: TamperingHost!
    let rig = try GuestRig(viommu: true) { port in
      host = TamperingHost(port)
      return host
    }
    host.refuseNextVIOMMUCommand = .ENOSPC
    #expect(Self.errno { try rig.kernel.claimDMAOwner(rig.pci, cookie: OwnerCookie(rawValue: 3)) } == .ENOSPC)
    #expect(rig.pci.userOwner == nil)
    #expect(
      try rig.kernel.iommu!.core.ownership(of: rig.kernel.iommu!.core.group(of: rig.pci.bdf)!) == .unowned)
    #expect(rig.kernel.iommu!.refusedCommands.count == 1)
    // The queue was reset: the next command goes through, and the kernel's DMA still works.
    try rig.kernel.register(CoveDMADriver())
    try rig.kernel.bind(rig.pci, driver: "cove-dma")
  }

  @Test func withoutAVIOMMUThereIsNoUserOwnership() throws {
    let rig = try GuestRig()
    #expect(Self.errno { try rig.kernel.claimDMAOwner(rig.pci, cookie: OwnerCookie(rawValue: 1)) } == .ENODEV)
  }
}
