import CoveGuestDrivers
import GuestABI
import GuestKernel
import HostPlatform
import IOMMU
import PCIe
import TDISP
import Testing

/// The whole guest story of issue 6, in memory: probe untrusted and DMA through bounce buffers →
/// unbind → lock → verify evidence → accept → rebind → DMA directly to private memory → the host
/// forces ERROR → driver removed, maps refused → re-lock, re-accept, rebind (SEMANTICS.md §5–6).
@Suite struct TrustChangeStoryTests {
  static let pattern: [UInt8] = (0..<3000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }

  /// Copies the pattern with the driver and checks the destination; returns the swiotlb slots the
  /// copy allocated (0 when nothing was bounced).
  static func copyAndCheck(_ rig: GuestRig, _ driver: CoveDMADriver) throws -> Int {
    let source = try rig.buffer()
    let destination = try rig.buffer()
    try rig.kernel.memory.write(source, bytes: pattern)
    let before = rig.kernel.swiotlb!.statistics.allocations
    let moved = try driver.copy(
      rig.pci, kernel: rig.kernel, from: source, to: destination, length: pattern.count)
    #expect(moved == pattern.count)
    #expect(try rig.kernel.memory.read(destination, count: pattern.count) == pattern)
    rig.kernel.memory.freePages(source, count: 1)
    rig.kernel.memory.freePages(destination, count: 1)
    return rig.kernel.swiotlb!.statistics.allocations - before
  }

  @Test func theWholeStory() throws { try story(viommu: false) }
  @Test func theWholeStoryWithAVIOMMU() throws { try story(viommu: true) }

  func story(viommu: Bool) throws {
    let rig = try GuestRig(viommu: viommu)
    let driver = CoveDMADriver()
    try rig.kernel.register(driver)
    let device = rig.pci
    #expect(device.driver == nil, "autoprobe is off: nothing binds before attestation")

    // Untrusted: the driver works, every buffer bounced through shared memory, T=0 only.
    try rig.kernel.bind(device, driver: "cove-dma")
    #expect(try Self.copyAndCheck(rig, driver) == 2)
    #expect(rig.tdiState == .configUnlocked)

    // Trust changes only with no driver bound.
    #expect(throws: KernelError.self) { try rig.kernel.tsmLock(device) }
    try rig.kernel.unbind(device)
    try rig.kernel.tsmLock(device)
    #expect(rig.tdiState == .configLocked)
    let verified = try rig.kernel.tsmAccept(device, policy: rig.policy)
    #expect(verified.measurements.keys.sorted() == [1, 2])
    #expect(rig.tdiState == .run)
    #expect(device.trust == .accepted)

    // Accepted: direct to private memory, nothing bounced, no fault on the platform.
    try rig.kernel.bind(device, driver: "cove-dma")
    #expect(try Self.copyAndCheck(rig, driver) == 0)
    #expect(rig.vmm.iommu.faults.isEmpty)
    #expect(rig.kernel.debug.reports.isEmpty)

    // The host clears bus mastering under the running TDI: ERROR on the device; the guest hears of it.
    let command = try rig.vmm.configRead(rig.guest.id, function: GuestRig.function, offset: 4, size: 2)
    try rig.vmm.hostConfigWrite(GuestRig.function, offset: 4, size: 2, value: command & ~0x4)
    #expect(rig.tdiState == .error)
    rig.kernel.handleHostEvents()
    #expect(device.driver == nil)
    guard case .revoked = device.trust else {
      Issue.record("trust is \(device.trust), not revoked")
      return
    }
    #expect(
      rig.kernel.events.contains(
        .trustRevoked(GuestRig.function, tdi: .error, reason: "TDI went to ERROR without the guest asking")))
    let buffer = try rig.buffer()
    #expect {
      _ = try rig.kernel.mapSingle(device, gpa: buffer, size: 64, direction: .toDevice)
    } throws: { ($0 as? KernelError)?.errno == .EIO }
    #expect {
      try rig.kernel.bind(device, driver: "cove-dma")
    } throws: { ($0 as? KernelError)?.errno == .EIO }

    // Recover: unlock (STOP scrubs the TDI), lock, accept, rebind, direct DMA again.
    try rig.kernel.tsmUnlock(device)
    #expect(rig.tdiState == .configUnlocked)
    try rig.kernel.tsmLock(device)
    try rig.kernel.tsmAccept(device, policy: rig.policy)
    try rig.kernel.bind(device, driver: "cove-dma")
    #expect(try Self.copyAndCheck(rig, driver) == 0)
    #expect(rig.tdiState == .run)
  }
}
