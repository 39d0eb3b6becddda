import CoveWire
import GuestABI
import HostPlatform
import IOMMU
import PCIe
import Testing

/// The command queue in guest memory, driven through the registers as a guest driver would: write
/// descriptors, write TAIL; errors stop the queue at the failing descriptor until the guest clears CQE.
@Suite struct VIOMMUCommandQueueTests {
  let rid = RequesterID(rawValue: 0x0308)
  let ring = PhysicalAddress(0x2_0000_0000)
  let domain = DomainID(rawValue: 1)

  /// A rig whose guest has a one-page command queue at `ring` and a table mapping 0x5000.
  func makeRig() throws -> (VIOMMURig, RadixIOPageTable) {
    let rig = VIOMMURig()
    rig.memory.mapFreshPage(at: ring)
    let table = try rig.makeTable()
    try table.map(IOVA(0x5000), to: PhysicalAddress(0x40_0000_3000), size: 0x1000, protection: .readWrite)
    rig.viommu.writeRegister(.commandQueueBase, ring.rawValue)
    return (rig, table)
  }

  func attach(_ table: RadixIOPageTable, domain: UInt32 = 1) -> VIOMMUCommand {
    .attach(
      requester: rid, pasid: nil, domain: DomainID(rawValue: domain), root: table.root, inputAddressBits: 48)
  }

  func post(_ rig: VIOMMURig, _ command: VIOMMUCommand, at index: UInt64) {
    rig.memory.guestStoreDescriptor(command.encode(), at: ring.advanced(by: index * 32))
  }

  func readGPA(_ rig: VIOMMURig, _ iova: UInt64) -> Result<UInt64, VIOMMUFault> {
    rig.viommu.translate(requester: rid, pasid: nil, iova: IOVA(iova), access: .read).map {
      $0.guestPhysical.rawValue
    }
  }

  @Test func aTailWriteExecutesEveryDescriptorBeforeItReturns() throws {
    let (rig, table) = try makeRig()
    post(rig, attach(table), at: 0)
    post(rig, .invalidateDomain(domain), at: 1)
    rig.viommu.writeRegister(.commandQueueTail, 2)
    #expect(rig.viommu.readRegister(.commandQueueHead) == 2)
    #expect(rig.viommu.readRegister(.status) == 0)
    #expect(rig.viommu.attachments.count == 1)
    #expect(readGPA(rig, 0x5000) == .success(0x40_0000_3000))

    // Stale until the guest queues the invalidation.
    #expect(try table.unmap(IOVA(0x5000), size: 0x1000) == 0x1000)
    try table.map(IOVA(0x5000), to: PhysicalAddress(0x40_0000_4000), size: 0x1000, protection: .readWrite)
    #expect(readGPA(rig, 0x5000) == .success(0x40_0000_3000))
    post(rig, .invalidateRange(domain: domain, pasid: nil, iova: IOVA(0x5000), size: 0x1000), at: 2)
    rig.viommu.writeRegister(.commandQueueTail, 3)
    #expect(readGPA(rig, 0x5000) == .success(0x40_0000_4000))
  }

  @Test func anInvalidDescriptorStopsTheQueueUntilTheGuestClearsCQE() throws {
    let (rig, table) = try makeRig()
    post(rig, attach(table), at: 0)
    var bad = VIOMMUCommand.invalidateAll.encode()
    bad[0] = 0x7F
    rig.memory.guestStoreDescriptor(bad, at: ring.advanced(by: 32))
    post(rig, .detach(requester: rid, pasid: nil), at: 2)
    rig.viommu.writeRegister(.commandQueueTail, 3)

    #expect(rig.viommu.readRegister(.commandQueueHead) == 1, "HEAD stays on the failing descriptor")
    #expect(rig.viommu.readRegister(.status) == VIOMMUStatus.commandQueueError | 0x01 << 8)
    #expect(rig.viommu.readRegister(.commandQueueErrorDetail) == 0, "the opcode's byte")
    #expect(
      rig.viommu.commandQueueError
        == VIOMMUCommandQueueError(
          head: 1,
          cause: .invalidDescriptor(WireError(.invalidValue, at: 0, field: "opcode (opcode 0x7f unknown)"))))
    #expect(
      rig.viommu.attachments.count == 1, "the descriptor before it took effect, the one after it did not")

    rig.viommu.writeRegister(.commandQueueTail, 3)  // while stopped: recorded, not acted on
    #expect(rig.viommu.readRegister(.commandQueueHead) == 1)

    post(rig, .invalidateAll, at: 1)
    rig.viommu.writeRegister(.status, VIOMMUStatus.commandQueueError)
    #expect(rig.viommu.readRegister(.status) == 0)
    #expect(rig.viommu.readRegister(.commandQueueHead) == 3)
    #expect(rig.viommu.attachments.isEmpty)
  }

  @Test func aRefusedCommandReportsItsErrno() throws {
    let (rig, table) = try makeRig()
    post(rig, attach(table), at: 0)
    post(rig, attach(table, domain: 2), at: 1)
    rig.viommu.writeRegister(.commandQueueTail, 2)
    #expect(rig.viommu.readRegister(.status) == VIOMMUStatus.commandQueueError | 0x03 << 8)
    #expect(rig.viommu.readRegister(.commandQueueErrorDetail) == 16)  // EBUSY
    #expect(rig.viommu.readRegister(.commandQueueHead) == 1)
    guard case .commandRefused(let command, let error) = rig.viommu.commandQueueError?.cause else {
      Issue.record("expected a refused command")
      return
    }
    #expect(command == attach(table, domain: 2))
    #expect(error.errno == .EBUSY)
    // Rewriting the base resets the queue.
    rig.viommu.writeRegister(.commandQueueBase, ring.rawValue)
    #expect(rig.viommu.readRegister(.status) == 0)
    #expect(rig.viommu.readRegister(.commandQueueHead) == 0)
    #expect(rig.viommu.readRegister(.commandQueueTail) == 0)
  }

  @Test func descriptorsAreFetchedThroughStage2AndTheAccessChecks() throws {
    let (rig, table) = try makeRig()
    post(rig, attach(table), at: 0)
    post(rig, .invalidateAll, at: 1)
    rig.memory.refusedHostPages.insert(try #require(rig.memory.hostPage(of: ring)))
    rig.viommu.writeRegister(.commandQueueTail, 2)
    #expect(rig.viommu.readRegister(.status) == VIOMMUStatus.commandQueueError | 0x02 << 8)
    #expect(rig.viommu.readRegister(.commandQueueErrorDetail) == ring.rawValue)
    #expect(rig.viommu.attachments.isEmpty)

    rig.memory.refusedHostPages.removeAll()
    rig.viommu.writeRegister(.status, VIOMMUStatus.commandQueueError)
    #expect(rig.viommu.readRegister(.commandQueueHead) == 2)
    #expect(rig.viommu.attachments.count == 1)

    // A queue page without stage-2 mapping: the detail is the word's guest-physical address.
    rig.memory.unmapStage2(ring)
    rig.viommu.writeRegister(.commandQueueTail, 3)
    #expect(
      rig.viommu.commandQueueError
        == VIOMMUCommandQueueError(head: 2, cause: .fetchFailed(ring.advanced(by: 64))))
    #expect(rig.viommu.readRegister(.commandQueueErrorDetail) == ring.rawValue + 64)
  }

  @Test func tailErrors() throws {
    let rig = VIOMMURig()
    rig.viommu.writeRegister(.commandQueueTail, 1)
    #expect(rig.viommu.readRegister(.status) == VIOMMUStatus.commandQueueError | 0x05 << 8)
    rig.viommu.writeRegister(.status, VIOMMUStatus.commandQueueError)
    #expect(rig.viommu.readRegister(.status) == 0)

    rig.memory.mapFreshPage(at: ring)
    rig.viommu.writeRegister(.commandQueueBase, ring.rawValue)
    rig.viommu.writeRegister(.commandQueueTail, 128)
    #expect(rig.viommu.readRegister(.status) == VIOMMUStatus.commandQueueError | 0x04 << 8)
    #expect(rig.viommu.readRegister(.commandQueueErrorDetail) == 128)
    #expect(rig.viommu.readRegister(.commandQueueTail) == 0)
    #expect(rig.viommu.commandQueueError == VIOMMUCommandQueueError(head: 0, cause: .tailOutOfRange(128)))
  }

  @Test func theRingWraps() throws {
    let (rig, table) = try makeRig()
    for index in 0..<UInt64(127) { post(rig, .invalidateAll, at: index) }
    rig.viommu.writeRegister(.commandQueueTail, 127)
    #expect(rig.viommu.readRegister(.commandQueueHead) == 127)
    post(rig, attach(table), at: 127)
    post(rig, .invalidateDomain(domain), at: 0)
    rig.viommu.writeRegister(.commandQueueTail, 1)
    #expect(rig.viommu.readRegister(.commandQueueHead) == 1)
    #expect(rig.viommu.readRegister(.status) == 0)
    #expect(rig.viommu.attachments.count == 1)
    #expect(rig.viommu.iotlb.invalidations == 128)

    // QS 1: two pages, 256 descriptors.
    rig.memory.mapFreshPage(at: ring.advanced(by: 0x1000))
    rig.viommu.writeRegister(.commandQueueBase, ring.rawValue | 1)
    post(rig, .invalidateAll, at: 200)
    for index in 0..<UInt64(200) { post(rig, .invalidateAll, at: index) }
    rig.viommu.writeRegister(.commandQueueTail, 201)
    #expect(rig.viommu.readRegister(.commandQueueHead) == 201)
    rig.viommu.writeRegister(.commandQueueTail, 256)
    #expect(rig.viommu.readRegister(.status) == VIOMMUStatus.commandQueueError | 0x04 << 8)
  }

  @Test func capabilitiesAndReservedRegisters() {
    let viommu = VIOMMURig().viommu
    #expect(viommu.readRegister(.capabilities) == 1 | 1 << 8 | 1 << 9 | 64 << 16 | 20 << 32 | 7 << 40)
    viommu.writeRegister(.capabilities, 0)
    #expect(viommu.readRegister(.capabilities) & 0xFF == 1)
    viommu.writeRegister(.commandQueueBase, .max)
    #expect(viommu.readRegister(.commandQueueBase) == 0x000F_FFFF_FFFF_F007)
    viommu.writeRegister(.commandQueueHead, 5)
    #expect(viommu.readRegister(.commandQueueHead) == 0)
    for offset: UInt64 in [0x04, 0x60, 0x1000, .max] {
      viommu.writeRegister(VIOMMURegister(rawValue: offset), .max)
      #expect(viommu.readRegister(VIOMMURegister(rawValue: offset)) == 0)
    }
    #expect(VIOMMURegister.faultRecord.description == "FAULT_RECORD[0]")
    #expect(VIOMMURegister(rawValue: 0x50).description == "FAULT_RECORD[3]")
  }
}
