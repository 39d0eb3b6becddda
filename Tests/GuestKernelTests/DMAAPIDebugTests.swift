import GuestKernel
import HostPlatform
import IOMMU
import PCIe
import Testing

/// The DMA API's debug checks as a driver meets them (like CONFIG_DMA_API_DEBUG): each misuse is
/// reported with the origin of the mapping it concerns and of the offending call.
@Suite struct DMAAPIDebugTests {
  static let file = "GuestKernelTests/DMAAPIDebugTests.swift"

  static func reports(_ rig: GuestRig) -> [DMADebugReport] {
    rig.kernel.events.compactMap { if case .dmaDebug(let report) = $0 { report } else { nil } }
  }

  static func rig() throws -> (GuestRig, UInt64) {
    let rig = try GuestRig()
    try rig.kernel.dmaSetMask(rig.pci, bits: 64)
    return (rig, try rig.buffer())
  }

  @Test func aDoubleUnmapNamesTheMappingAndTheFirstUnmap() throws {
    let (rig, buffer) = try Self.rig()
    let mapLine = #line + 1
    let address = try rig.kernel.mapSingle(rig.pci, gpa: buffer, size: 64, direction: .toDevice)
    rig.kernel.unmapSingle(rig.pci, address, size: 64, direction: .toDevice)
    #expect(Self.reports(rig).isEmpty)
    let secondLine = #line + 1
    rig.kernel.unmapSingle(rig.pci, address, size: 64, direction: .toDevice)
    let report = try #require(Self.reports(rig).first)
    #expect(report.kind == .doubleUnmap)
    #expect(report.mappingOrigin?.file == Self.file && report.mappingOrigin?.line == mapLine)
    #expect(report.callOrigin?.line == secondLine)
    #expect(rig.kernel.swiotlb!.usedSlots == 0, "the second unmap freed nothing")
  }

  @Test func aWrongSizeOrDirectionIsReportedAndTheMappingStillGoes() throws {
    let (rig, buffer) = try Self.rig()
    let address = try rig.kernel.mapSingle(rig.pci, gpa: buffer, size: 64, direction: .toDevice)
    rig.kernel.unmapSingle(rig.pci, address, size: 32, direction: .fromDevice)
    #expect(Self.reports(rig).map(\.kind) == [.wrongSize, .wrongDirection])
    #expect(
      Self.reports(rig).allSatisfy { $0.device == GuestRig.function && $0.dmaAddress == address.rawValue })
    #expect(rig.kernel.swiotlb!.usedSlots == 0)
  }

  @Test func theCPUTouchingABufferTheDeviceOwnsIsReported() throws {
    let (rig, buffer) = try Self.rig()
    let address = try rig.kernel.mapSingle(rig.pci, gpa: buffer, size: 64, direction: .fromDevice)
    _ = try rig.kernel.memory.read(buffer, count: 16)
    #expect(Self.reports(rig).map(\.kind) == [.cpuAccessWhileDeviceOwned])
    rig.kernel.syncSingleForCPU(rig.pci, address, size: 64, direction: .fromDevice)
    _ = try rig.kernel.memory.read(buffer, count: 16)
    #expect(Self.reports(rig).count == 1, "after sync for CPU the CPU owns it")
  }

  @Test func anUnmapOfNothingIsReported() throws {
    let (rig, _) = try Self.rig()
    rig.kernel.unmapPage(rig.pci, DMAAddress(0x1234_0000), size: 4096, direction: .toDevice)
    #expect(Self.reports(rig).map(\.kind) == [.notMapped])
  }

  @Test func theChecksCanBeOff() throws {
    let rig = try GuestRig(options: KernelOptions(autoprobe: false, dmaDebug: false))
    try rig.kernel.dmaSetMask(rig.pci, bits: 64)
    let buffer = try rig.buffer()
    let address = try rig.kernel.mapSingle(rig.pci, gpa: buffer, size: 64, direction: .toDevice)
    rig.kernel.unmapSingle(rig.pci, address, size: 64, direction: .toDevice)
    rig.kernel.unmapSingle(rig.pci, address, size: 64, direction: .toDevice)
    #expect(Self.reports(rig).isEmpty)
    #expect(rig.kernel.swiotlb!.usedSlots == 0)
  }
}
