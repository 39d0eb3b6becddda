import GuestABI
import HostPlatform
import IOMMU
import PCIe
import TDISP
import Testing

/// The platform IOMMU's rules driven directly, and the VMM's guards (SEMANTICS.md §5; issue 5).
@Suite struct PlatformIOMMUTests {
  typealias Platform = TrustedDMATests.Platform
  static let function = Platform.function

  func read(_ iommu: PlatformIOMMU, _ address: UInt64, tBit: Bool, count: Int = 16) -> DMAVerdict {
    var buffer = [UInt8](repeating: 0xAA, count: count)
    return buffer.withUnsafeMutableBytes { bytes in
      iommu.dmaRead(
        TLP(requesterID: Self.function, address: address, tBit: tBit, kind: .memoryRead(length: count)),
        into: bytes)
    }
  }

  @Test func tOneNeedsRunTheOwningGuestAndASecureStream() throws {
    let platform = try Platform()
    let iommu = platform.iommu
    let guest = platform.guest.id
    let cases: [(TEEStanding, DMAVerdict)] = [
      (
        TEEStanding(tdiState: .configLocked, boundGuest: guest, streamSecure: true),
        .refused(.untrustedTBit("TDI in CONFIG_LOCKED"))
      ),
      (
        TEEStanding(tdiState: .error, boundGuest: guest, streamSecure: true),
        .refused(.untrustedTBit("TDI in ERROR"))
      ),
      (
        TEEStanding(tdiState: .run, boundGuest: GuestID(9), streamSecure: true),
        .refused(.untrustedTBit("TDI not bound to guest 1"))
      ),
      (
        TEEStanding(tdiState: .run, boundGuest: nil, streamSecure: true),
        .refused(.untrustedTBit("TDI not bound to guest 1"))
      ),
      (
        TEEStanding(tdiState: .run, boundGuest: guest, streamSecure: false),
        .refused(.untrustedTBit("IDE stream not SECURE"))
      ),
      (TEEStanding(tdiState: .run, boundGuest: guest, streamSecure: true), .completed),
    ]
    for (standing, expected) in cases {
      iommu.standing = { _ in standing }
      #expect(read(iommu, 0x10000, tBit: true) == expected)
    }
    // T=0 to the private alias: refused whatever the standing.
    #expect(read(iommu, 0x10000, tBit: false) == .refused(.tZeroToPrivate))
    #expect(iommu.faults.count == 6)
    #expect(iommu.faults.last?.tlp.address == 0x10000)
  }

  @Test func faultsBeyondTheLogAreCountedNotLost() throws {
    let platform = try Platform()
    for _ in 0..<(PlatformIOMMU.faultLogLimit + 3) { _ = read(platform.iommu, 0x10000, tBit: false) }
    #expect(platform.iommu.faults.count == PlatformIOMMU.faultLogLimit)
    #expect(platform.iommu.faultsNotLogged == 3)
  }

  @Test func boundaryXMustBeAlignedAndFitTheIOVASpace() throws {
    let platform = try Platform()
    for bad: UInt64 in [1 << 48, (1 << 20) + 8, (1 << 48) - (1 << 19)] {
      #expect(throws: VMMError.self) {
        _ = try platform.vmm.createGuest(GuestConfiguration(memoryBytes: 1 << 20, boundary: bad))
      }
    }
    // X all ones: everything private, no shared alias to convert to.
    let allPrivate = try platform.vmm.createGuest(GuestConfiguration(memoryBytes: 1 << 20, boundary: .max))
    #expect(throws: VMMError(.EINVAL, "boundary X is all ones: the guest has no shared alias")) {
      try platform.vmm.convert(allPrivate.id, gpa: 0, pages: 1, toShared: true)
    }
    #expect(platform.memory.page(at: allPrivate.pages[0])?.state == .private)
  }

  @Test func aConversionRangeIsAllOrNothing() throws {
    let platform = try Platform()
    let guest = platform.guest.id
    try platform.vmm.convert(guest, gpa: 0x42000, pages: 1, toShared: true)
    try platform.vmm.guestWrite(guest, gpa: 0x40000, bytes: [1, 2, 3])
    #expect(throws: VMMError(.EINVAL, "GPA 0x42000 is already shared")) {
      try platform.vmm.convert(guest, gpa: 0x40000, pages: 4, toShared: true)
    }
    // Nothing before the offending page changed: still private, contents intact.
    #expect(platform.guest.sharedPages == [0x42])
    #expect(platform.memory.page(at: platform.guest.pages[0x40])?.state == .private)
    #expect(try platform.vmm.guestRead(guest, gpa: 0x40000, count: 3) == [1, 2, 3])
  }

  @Test func aGuestCannotBeAssignedATDIBoundToAnotherGuest() throws {
    let platform = try Platform()
    let other = try platform.vmm.createGuest(GuestConfiguration(memoryBytes: 1 << 20))
    try platform.tsm.connect()
    let second = BDF(bus: 3, device: 0, function: 0).requesterID
    try platform.tsm.bind(second, to: other.id)
    #expect(throws: VMMError(.EBUSY, "03:00.0's TDI is bound to guest 2")) {
      try platform.vmm.assign(second, to: platform.guest.id)
    }
    try platform.vmm.assign(second, to: other.id)
  }

  @Test func guestAccessesFollowStage2PageByPage() throws {
    let platform = try Platform()
    let guest = platform.guest.id
    let bytes = (0..<16).map { UInt8($0) }
    try platform.vmm.guestWrite(guest, gpa: 0x0FF8, bytes: bytes)  // spans GPA pages 0 and 1
    #expect(try platform.vmm.guestRead(guest, gpa: 0x0FF8, count: 16) == bytes)
    #expect(
      try platform.memory.read(platform.guest.pages[1], count: 8, as: .owner(guest)) == Array(bytes[8...]))
    #expect(throws: VMMError(.EFAULT, "GPA range outside guest memory")) {
      _ = try platform.vmm.guestRead(guest, gpa: (1 << 20) - 4, count: 8)
    }
  }

  @Test func aBARBeingSizedDecodesNothingAndDoesNotTrap() throws {
    let platform = try Platform()
    platform.device.tdisp.configWrite(
      Self.function, offset: PCIHeaderRegister.bar0, size: 4, value: 0xFFFF_FFFF)
    platform.device.tdisp.configWrite(
      Self.function, offset: PCIHeaderRegister.bar0 + 4, size: 4, value: 0xFFFF_FFFF)
    #expect(platform.device.bar0(of: Self.function) == nil)
    #expect(
      try platform.vmm.mmio(platform.guest.id, function: Self.function, address: 0xFFFF_FFFF_FFFF_0000)
        == 0xFFFF_FFFF)
  }

  @Test func hostMMIOWithT0ToARunningTDIsPrivateRegistersErrorsIt() throws {
    let platform = try Platform()
    try platform.accept()
    // The owning guest (T=1) reads the engine's ID register; the host's T=0 access is refused and ERRORs.
    #expect(
      try platform.vmm.mmio(platform.guest.id, function: Self.function, address: platform.bar) == 0x414D_4443)
    let host = TLP(
      requesterID: platform.device.rootPort.requesterID, address: platform.bar, tBit: false,
      kind: .memoryRead(length: 4))
    #expect(platform.device.mmio(host, at: Self.function) == 0xFFFF_FFFF)
    #expect(platform.device.tdisp.tdi(Self.function)?.state == .error)
  }
}

extension PlatformIOMMUTests {
  /// ACS decides isolation: with it each function is its own group and can go to its own guest;
  /// without it the functions share a group, which goes to one guest whole (SEMANTICS.md §1).
  @Test(arguments: [true, false])
  func groupFormationFollowsACS(acs: Bool) throws {
    let platform = try Platform(acs: acs)
    let core = platform.iommu.core
    let pf0 = BDF(bus: 3, device: 0, function: 0)
    let pf1 = BDF(bus: 3, device: 0, function: 1)
    #expect((core.group(of: pf0) == core.group(of: pf1)) == !acs)
    let other = try platform.vmm.createGuest(GuestConfiguration(memoryBytes: 1 << 20))
    if acs {
      try platform.vmm.assign(pf0.requesterID, to: other.id)
      #expect(platform.iommu.assignments[pf0.requesterID] == other.id)
    } else {
      // 03:00.1 went to guest 1, and took 03:00.0 with it.
      #expect(platform.iommu.assignments[pf0.requesterID] == platform.guest.id)
      #expect(throws: VMMError.self) { try platform.vmm.assign(pf0.requesterID, to: other.id) }
    }
  }

  @Test func aGuestsConfigWriteToItsLockedTDIErrorsIt() throws {
    let platform = try Platform()
    try platform.accept()
    let events = try platform.vmm.configWrite(
      platform.guest.id, function: Self.function, offset: PCIHeaderRegister.command, size: 2, value: 0x0002)
    #expect(events == [.busMasterDisabled])
    #expect(platform.device.tdisp.tdi(Self.function)?.state == .error)
    let other = try platform.vmm.createGuest(GuestConfiguration(memoryBytes: 1 << 20))
    #expect(throws: VMMError(.EPERM, "03:00.1 is not assigned to guest 2")) {
      _ = try platform.vmm.configRead(other.id, function: Self.function, offset: 0, size: 4)
    }
  }
}

extension PlatformIOMMUTests {
  @Test func assignmentsShowTheirBoundaryAndEveryBlockedAccessIsAnEvent() throws {
    let platform = try Platform()
    #expect(
      platform.vmm.events.map(\.description) == [
        "guest 1 created: 1 MiB, boundary X = 0x800000000000",
        "03:00.1 assigned to guest 1 (X = 0x800000000000)",
      ])
    _ = read(platform.iommu, 0x10000, tBit: false)
    _ = read(platform.iommu, 0x20000, tBit: false)
    let blocked = platform.vmm.events.compactMap { event -> PlatformDMAFault? in
      if case .dmaBlocked(let fault) = event { return fault }
      return nil
    }
    #expect(blocked == platform.iommu.faults)
    #expect(blocked.count == 2)
    #expect(
      platform.vmm.events.last?.description
        == "DMA blocked: MRd 16B RID 03:00.1 @0x20000 T=0: T=0 access to private memory")

    let nested = try Platform(viommu: true)
    #expect(nested.vmm.events.last?.description == "03:00.1 assigned to guest 1 (vIOMMU)")
    let allPrivate = try platform.vmm.createGuest(GuestConfiguration(memoryBytes: 1 << 21, boundary: .max))
    #expect(platform.vmm.events.last?.description == "guest 2 created: 2 MiB, boundary X = all private")
    _ = allPrivate
  }

  @Test func theGuestReachesItsVIOMMURegistersThroughTheVMM() throws {
    let platform = try Platform(viommu: true)
    let plain = try Platform()
    let capabilities = try platform.vmm.viommuRead(platform.guest.id, .capabilities)
    #expect(capabilities == platform.guest.viommu!.readRegister(.capabilities))
    try platform.vmm.viommuWrite(platform.guest.id, .commandQueueBase, 0x7000)
    #expect(platform.guest.viommu!.readRegister(.commandQueueBase) & ~0xFFF == 0x7000)
    #expect(throws: VMMError(.ENODEV, "guest 1 has no vIOMMU")) {
      _ = try plain.vmm.viommuRead(plain.guest.id, .capabilities)
    }
  }
}

extension PlatformIOMMUTests {
  @Test func aGroupWithoutACSIsUnassignedWhole() throws {
    let platform = try Platform(acs: false)
    let pf0 = BDF(bus: 3, device: 0, function: 0).requesterID
    #expect(platform.iommu.assignments[pf0] == platform.guest.id)
    #expect(platform.vmm.events.filter { if case .deviceAssigned = $0 { true } else { false } }.count == 2)
    try platform.iommu.unassign(Self.function)
    #expect(platform.iommu.assignments[pf0] == nil)
    #expect(platform.iommu.assignments[Self.function] == nil)
    #expect(read(platform.iommu, 0x10000, tBit: false) == .refused(.blocked))
  }

  /// A single-function group holding the guest's domain is unassigned too (it once failed with EBUSY,
  /// found by the teardown of a guest that went away).
  @Test func aSingleFunctionGroupIsUnassigned() throws {
    let platform = try Platform()
    #expect(platform.iommu.assignments[Self.function] == platform.guest.id)
    #expect(read(platform.iommu, 0x10000, tBit: false) != .refused(.blocked))
    try platform.iommu.unassign(Self.function)
    #expect(platform.iommu.assignments[Self.function] == nil)
    #expect(read(platform.iommu, 0x10000, tBit: false) == .refused(.blocked))
  }
}
