import CoveWire
import GuestABI
import HostPlatform
import IOMMU
import PCIe
import Testing

/// Fault records (exact bytes, decode errors), the bounded queue with its sticky overflow flag, and
/// the fault registers the guest drains it through.
@Suite struct VIOMMUFaultQueueTests {
  let rid = RequesterID(rawValue: 0x0308)

  func record(_ iova: UInt64, reason: VIOMMUFault = .noAttachment) -> VIOMMUFaultRecord {
    VIOMMUFaultRecord(reason, requester: rid, pasid: nil, access: .read, domain: nil, iova: IOVA(iova))
  }

  @Test func recordHasTheDocumentedLayout() throws {
    let record = VIOMMUFaultRecord(
      .stage1TableReadRefused(level: 3, entry: PhysicalAddress(0x1_0000_1010)), requester: rid,
      pasid: PASID(5),
      access: .write, domain: DomainID(rawValue: 0x1234), iova: IOVA(0x80_8060_5123))
    let bytes = record.encode()
    #expect(
      bytes == [
        0x06, 0x07, 0x03, 0x00, 0x08, 0x03, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x34, 0x12, 0x00, 0x00,
        0x23, 0x51, 0x60, 0x80, 0x80, 0x00, 0x00, 0x00, 0x10, 0x10, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
      ])
    #expect(try VIOMMUFaultRecord(parsing: bytes) == record)
    #expect(record.fault == .stage1TableReadRefused(level: 3, entry: PhysicalAddress(0x1_0000_1010)))
    #expect(record.words == [0x0000_0308_0003_0706, 0x0000_1234_0000_0005, 0x80_8060_5123, 0x1_0000_1010])
    #expect(
      record.description
        == "fault 03:01.0 pasid 5 write iova 0x8080605123: stage 1 table read at level 3 refused (gpa 0x100001010)"
    )
  }

  @Test(arguments: [
    VIOMMUFault.noAttachment, .addressOutOfRange, .stage1NotPresent(level: 4), .stage1ReservedBits(level: 1),
    .stage1TableNotMapped(level: 2, entry: PhysicalAddress(0x2018)),
    .stage1TableReadRefused(level: 3, entry: PhysicalAddress(0x3010)),
    .stage2OutputNotMapped(output: PhysicalAddress(0x40_0000_3123)), .permission,
  ])
  func everyFaultSurvivesItsRecord(_ fault: VIOMMUFault) throws {
    let record = VIOMMUFaultRecord(
      fault, requester: rid, pasid: nil, access: .read, domain: DomainID(rawValue: 1), iova: IOVA(0x1000))
    let decoded = try VIOMMUFaultRecord(parsing: record.encode())
    #expect(decoded == record)
    #expect(decoded.fault == fault)
  }

  @Test func unknownReasonsSurviveDecoding() throws {
    var bytes = record(0x1000).encode()
    bytes[0] = 0x42
    let decoded = try VIOMMUFaultRecord(parsing: bytes)
    #expect(decoded.reason == VIOMMUFaultReasonCode(rawValue: 0x42))
    #expect(decoded.fault == nil)
    #expect(decoded.encode() == bytes)
    bytes[0] = VIOMMUFaultReasonCode.stage1NotPresent.rawValue
    bytes[2] = 9  // no level 9
    #expect(try VIOMMUFaultRecord(parsing: bytes).fault == nil)
  }

  @Test func malformedRecordsAreRefusedAtTheirField() {
    let good = record(0x1000).encode()
    for (offset, value, at) in [(1, 0x08, 1), (3, 0x01, 3), (7, 0x01, 6), (8, 0x01, 8), (14, 0x01, 12)] {
      var bytes = good
      bytes[offset] = UInt8(value)
      #expect(throws: WireError.self, "byte \(offset)") { try VIOMMUFaultRecord(parsing: bytes) }
      #expect((try? VIOMMUFaultRecord(parsing: bytes)) == nil)
      do {
        _ = try VIOMMUFaultRecord(parsing: bytes)
      } catch {
        #expect(error.code == .invalidValue && error.offset == at, "byte \(offset): \(error)")
      }
    }
    var pasidTooWide = VIOMMUFaultRecord(
      .noAttachment, requester: rid, pasid: PASID(1), access: .read, domain: nil, iova: IOVA(0)
    ).encode()
    pasidTooWide[10] = 0x10
    #expect(throws: WireError(.invalidValue, at: 8, field: "PASID (bits 31:20 reserved)")) {
      try VIOMMUFaultRecord(parsing: pasidTooWide)
    }
    #expect(throws: WireError(.truncated, at: 24, field: "guest-physical address")) {
      try VIOMMUFaultRecord(parsing: Array(good.dropLast()))
    }
    #expect(throws: WireError(.trailingBytes, at: 32, field: "vIOMMU fault record")) {
      try VIOMMUFaultRecord(parsing: good + [0])
    }
  }

  @Test func overflowStopsRecordingUntilTheGuestClearsIt() {
    var queue = VIOMMUFaultQueue(capacity: 2)
    queue.report(record(0x1000))
    queue.report(record(0x2000))
    #expect(!queue.overflowed)
    queue.report(record(0x3000))
    #expect(queue.overflowed)
    #expect(queue.records.map(\.iova) == [IOVA(0x1000), IOVA(0x2000)], "the oldest are kept")
    #expect(queue.pop()?.iova == IOVA(0x1000))
    queue.report(record(0x4000))
    #expect(queue.records.map(\.iova) == [IOVA(0x2000)], "nothing is recorded while the overflow flag is set")
    #expect(queue.drain().map(\.iova) == [IOVA(0x2000)])
    #expect(queue.overflowed, "draining does not clear the flag")
    queue.report(record(0x5000))
    #expect(queue.count == 0)
    #expect(queue.droppedCount == 3)
    queue.clearOverflow()
    queue.report(record(0x6000))
    queue.report(record(0x7000))
    queue.report(record(0x8000))
    #expect(queue.records.map(\.iova) == [IOVA(0x6000), IOVA(0x7000)])
    #expect(queue.overflowed)
    #expect(queue.droppedCount == 4)
  }

  @Test func translationFaultsAreRecordedExactly() throws {
    let rig = VIOMMURig()
    let table = try rig.makeTable()
    try table.map(IOVA(0x5000), to: PhysicalAddress(0x40_0000_3000), size: 0x1000, protection: .read)
    try rig.viommu.execute(
      .attach(
        requester: rid, pasid: PASID(9), domain: DomainID(rawValue: 4), root: table.root, inputAddressBits: 48
      ))
    _ = rig.viommu.translate(requester: rid, pasid: nil, iova: IOVA(0x5000), access: .read)
    _ = rig.viommu.translate(requester: rid, pasid: PASID(9), iova: IOVA(0x5008), access: .write)
    _ = rig.viommu.translate(requester: rid, pasid: PASID(9), iova: IOVA(0x6000), access: .read)
    #expect(
      rig.viommu.translate(requester: rid, pasid: PASID(9), iova: IOVA(0x5010), access: .read).isSuccess)
    #expect(
      rig.viommu.drainFaults() == [
        VIOMMUFaultRecord(
          reason: .noAttachment, level: 0, requester: rid, pasid: nil, access: .read, domain: nil,
          iova: IOVA(0x5000),
          guestAddress: PhysicalAddress(0)),
        VIOMMUFaultRecord(
          reason: .permission, level: 0, requester: rid, pasid: PASID(9), access: .write,
          domain: DomainID(rawValue: 4), iova: IOVA(0x5008), guestAddress: PhysicalAddress(0)),
        VIOMMUFaultRecord(
          reason: .stage1NotPresent, level: 1, requester: rid, pasid: PASID(9), access: .read,
          domain: DomainID(rawValue: 4), iova: IOVA(0x6000), guestAddress: PhysicalAddress(0)),
      ])
    // A PASID wider than 20 bits matches nothing and is recorded as the 20-bit field holds it.
    _ = rig.viommu.translate(requester: rid, pasid: PASID(0x10_0009), iova: IOVA(0x5000), access: .read)
    #expect(rig.viommu.drainFaults().map(\.pasid) == [PASID(9)])
  }

  @Test func theGuestDrainsThroughTheRegisters() {
    let rig = VIOMMURig(configuration: VIOMMU.Configuration(faultQueueCapacity: 2))
    let viommu = rig.viommu
    #expect(viommu.readRegister(.capabilities) >> 16 & 0xFFFF == 2)
    #expect(viommu.readRegister(.status) == 0)
    #expect(viommu.readRegister(.faultRecord) == 0)
    for page in 1...3 {
      _ = viommu.translate(requester: rid, pasid: nil, iova: IOVA(UInt64(page) << 12), access: .write)
    }
    #expect(viommu.readRegister(.status) == VIOMMUStatus.faultPending | VIOMMUStatus.faultOverflow)
    #expect(viommu.readRegister(.faultCount) == 2)
    let first = (0..<4).map { viommu.readRegister(VIOMMURegister(rawValue: 0x38 + 8 * $0)) }
    #expect(
      first == record(0x1000).words.enumerated().map { $0.offset == 0 ? $0.element | 0x200 : $0.element })
    viommu.writeRegister(.faultPop, 1)
    #expect(viommu.readRegister(VIOMMURegister(rawValue: 0x48)) == 0x2000)
    viommu.writeRegister(.faultPop, 0)
    #expect(viommu.readRegister(.status) == VIOMMUStatus.faultOverflow)
    #expect(viommu.readRegister(.faultRecord) == 0)
    viommu.writeRegister(.faultPop, 0)  // nothing to pop: ignored
    viommu.writeRegister(.status, VIOMMUStatus.faultOverflow | VIOMMUStatus.faultPending)
    #expect(viommu.readRegister(.status) == 0)
    _ = viommu.translate(requester: rid, pasid: nil, iova: IOVA(0x4000), access: .read)
    #expect(viommu.readRegister(.faultCount) == 1)
    #expect(viommu.readRegister(VIOMMURegister(rawValue: 0x48)) == 0x4000)
  }
}

extension Result {
  var isSuccess: Bool {
    if case .success = self { return true }
    return false
  }
}
