import CoveGuestDrivers
import GuestABI
import GuestKernel
import HostPlatform
import IOMMU
import PCIe
import TDISP
import Testing

/// Shared virtual addressing for guest processes (SEMANTICS.md §4): a process bound to a device, the
/// device given the process's virtual addresses, IO page faults resolved, munmap and exit followed.
@Suite struct SVATests {
  static let pattern: [UInt8] = (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }

  static func errno(_ body: () throws -> Void) -> Errno? {
    do { try body() } catch let error as KernelError { return error.errno } catch { return nil }
    return nil
  }

  static func bound(accept: Bool) throws -> (GuestRig, PASIDCopyDriver) {
    let rig = try GuestRig(viommu: true)
    if accept {
      try rig.kernel.tsmLock(rig.pci)
      try rig.kernel.tsmAccept(rig.pci, policy: rig.policy)
    }
    let driver = PASIDCopyDriver()
    try rig.kernel.register(driver)
    try rig.kernel.bind(rig.pci, driver: driver.name)
    return (rig, driver)
  }

  @Test func anUntrustedDevicesIOPageFaultsAreResolvedAndTheCopyRetried() throws {
    let (rig, driver) = try Self.bound(accept: false)
    let process = rig.kernel.createProcess()
    // Shared memory (the device is not accepted), populated on first touch.
    let source = try process.mmap(pages: 1, populate: false, shared: true)
    let destination = try process.mmap(pages: 1, populate: false, shared: true)
    try process.write(source, bytes: Self.pattern)
    #expect(process.populatedPages == 1)
    let pasid = try driver.attachProcess(process, device: rig.pci, kernel: rig.kernel)
    #expect(pasid == rig.kernel.iommu!.core.pasid(of: process.addressSpace))
    let moved = try driver.copy(
      inProcessOf: rig.pci, kernel: rig.kernel, from: source, to: destination, length: 4096)
    #expect(moved == 4096)
    #expect(process.populatedPages == 3, "source, the ring page, and the destination the device faulted in")
    #expect(try process.read(destination, count: 4096) == Self.pattern)
    #expect(rig.tdiState == .configUnlocked)
  }

  @Test func anAcceptedDeviceUsesThePopulatedProcessMemoryDirectly() throws {
    let (rig, driver) = try Self.bound(accept: true)
    let process = rig.kernel.createProcess()
    let source = try process.mmap(pages: 1)
    let destination = try process.mmap(pages: 1)
    try process.write(source, bytes: Self.pattern)
    _ = try driver.attachProcess(process, device: rig.pci, kernel: rig.kernel)
    #expect(
      try driver.copy(inProcessOf: rig.pci, kernel: rig.kernel, from: source, to: destination, length: 4096)
        == 4096)
    #expect(try process.read(destination, count: 4096) == Self.pattern)
    #expect(rig.tdiState == .run, "nothing faulted")
    #expect(rig.vmm.iommu.faults.isEmpty)
  }

  @Test func munmapAndExitReachTheDevicesView() throws {
    let (rig, driver) = try Self.bound(accept: false)
    let process = rig.kernel.createProcess()
    let buffer = try process.mmap(pages: 2, shared: true)
    let pasid = try driver.attachProcess(process, device: rig.pci, kernel: rig.kernel)
    let viommu = rig.guest.viommu!
    func translates(_ address: VirtualAddress) -> Bool {
      (try? viommu.translate(
        requester: GuestRig.function, pasid: pasid, iova: IOVA(address.rawValue), access: .read
      ).get())
        != nil
    }
    let second = VirtualAddress(buffer.rawValue + 4096)
    #expect(translates(buffer) && translates(second))
    process.munmap(buffer, pages: 1)
    #expect(!translates(buffer), "munmap invalidated the device's cached translation")
    #expect(translates(second))
    process.exit()
    #expect(!translates(second))
    let outcomes = rig.kernel.handleIOPageFaults()
    #expect(outcomes.map(\.response) == [.invalid, .invalid], "faults after exit are refused")
  }

  @Test func bindingFollowsTheCoreRules() throws {
    let (rig, _) = try Self.bound(accept: false)
    let process = rig.kernel.createProcess()
    let pagesBefore = rig.kernel.memory.allocatedPages
    let first = try rig.kernel.svaBind(rig.pci, process: process)
    let again = try rig.kernel.svaBind(rig.pci, process: process)
    #expect(first === again && first.references == 2)
    try rig.kernel.svaUnbind(rig.pci, again)
    #expect(try rig.kernel.iommu!.core.pasidTable(of: rig.pci.bdf)[first.pasid] != nil)
    try rig.kernel.svaUnbind(rig.pci, first)
    #expect(try rig.kernel.iommu!.core.pasidTable(of: rig.pci.bdf)[first.pasid] == nil)
    #expect(rig.kernel.memory.allocatedPages == pagesBefore, "the SVA domain's mirror table is freed")
    #expect(Self.errno { try rig.kernel.svaUnbind(rig.pci, first) } == .EINVAL)

    let noIOMMU = try GuestRig()
    #expect(
      Self.errno { _ = try noIOMMU.kernel.svaBind(noIOMMU.pci, process: noIOMMU.kernel.createProcess()) }
        == .ENODEV)
  }
}
