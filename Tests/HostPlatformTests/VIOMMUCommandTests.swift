import CoveWire
import GuestABI
import HostPlatform
import IOMMU
import PCIe
import Testing

/// The 32-byte command descriptors: exact bytes, round trips, every decode error at its byte, and the
/// errno of every refused command.
@Suite struct VIOMMUCommandTests {
  static let rid = RequesterID(rawValue: 0x0308)
  static let domain = DomainID(rawValue: 0x1234)

  static let everyCommand: [VIOMMUCommand] = [
    .attach(
      requester: rid, pasid: nil, domain: domain, root: PhysicalAddress(0x1_0000_0000), inputAddressBits: 48),
    .attach(
      requester: rid, pasid: PASID(0xF_FFFF), domain: domain, root: PhysicalAddress(0x2000),
      inputAddressBits: 39),
    .detach(requester: rid, pasid: nil),
    .detach(requester: RequesterID(rawValue: 0xFFFF), pasid: PASID(1)),
    .invalidateRange(domain: domain, pasid: nil, iova: IOVA(0x1000_0000), size: 0x20_0000),
    .invalidateRange(domain: domain, pasid: PASID(7), iova: IOVA(0), size: 0x1000),
    .invalidatePASID(domain: domain, pasid: PASID(7)),
    .invalidateDomain(domain),
    .invalidateAll,
  ]

  @Test func attachHasTheDocumentedLayout() {
    let bytes = VIOMMUCommand.attach(
      requester: Self.rid, pasid: PASID(5), domain: Self.domain, root: PhysicalAddress(0x1_0000_0000),
      inputAddressBits: 48
    ).encode()
    #expect(
      bytes == [
        0x01, 0x01, 0x08, 0x03, 0x05, 0x00, 0x00, 0x00, 0x34, 0x12, 0x00, 0x00, 48, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      ])
    let range = VIOMMUCommand.invalidateRange(
      domain: Self.domain, pasid: nil, iova: IOVA(0x1000_0000), size: 0x20_0000
    ).encode()
    #expect(range[0] == 0x03 && range[1] == 0 && range[8] == 0x34 && range[9] == 0x12)
    #expect(Array(range[16..<24]) == [0x00, 0x00, 0x00, 0x10, 0, 0, 0, 0])
    #expect(Array(range[24..<32]) == [0x00, 0x00, 0x20, 0x00, 0, 0, 0, 0])
    #expect(VIOMMUCommand.invalidateAll.encode() == [0x06] + Array(repeating: 0, count: 31))
  }

  @Test(arguments: everyCommand)
  func roundTrips(_ command: VIOMMUCommand) throws {
    let bytes = command.encode()
    #expect(bytes.count == VIOMMUCommand.descriptorSize)
    #expect(try VIOMMUCommand(parsing: bytes) == command)
  }

  /// A descriptor changed at one byte, and where decoding must object.
  struct Malformed: CustomStringConvertible, Sendable {
    var name: String
    var base: VIOMMUCommand
    var offset: Int
    var value: UInt8
    var expected: WireError.Code
    var at: Int
    var description: String { name }
  }

  static let malformed: [Malformed] = [
    .init(name: "opcode 0", base: .invalidateAll, offset: 0, value: 0x00, expected: .invalidValue, at: 0),
    .init(name: "opcode 7", base: .invalidateAll, offset: 0, value: 0x07, expected: .invalidValue, at: 0),
    .init(name: "flag bit 1", base: .invalidateAll, offset: 1, value: 0x02, expected: .invalidValue, at: 1),
    .init(
      name: "PV on INVALIDATE_DOMAIN", base: .invalidateDomain(domain), offset: 1, value: 0x01,
      expected: .invalidValue, at: 1),
    .init(
      name: "PASID without PV", base: .detach(requester: rid, pasid: nil), offset: 4, value: 0x01,
      expected: .invalidValue, at: 4),
    .init(
      name: "PASID bit 20", base: .detach(requester: rid, pasid: PASID(1)), offset: 6, value: 0x10,
      expected: .invalidValue, at: 4),
    .init(
      name: "requester on INVALIDATE_ALL", base: .invalidateAll, offset: 3, value: 0x01,
      expected: .invalidValue, at: 2),
    .init(
      name: "domain on DETACH", base: .detach(requester: rid, pasid: nil), offset: 11, value: 0x01,
      expected: .invalidValue, at: 8),
    .init(
      name: "width on INVALIDATE_DOMAIN", base: .invalidateDomain(domain), offset: 12, value: 48,
      expected: .invalidValue, at: 12),
    .init(
      name: "reserved byte 15", base: everyCommand[0], offset: 15, value: 0x80, expected: .invalidValue,
      at: 13),
    .init(
      name: "address on INVALIDATE_PASID", base: .invalidatePASID(domain: domain, pasid: PASID(7)),
      offset: 16, value: 0x01, expected: .invalidValue, at: 16),
    .init(
      name: "size on ATTACH", base: everyCommand[0], offset: 31, value: 0x01, expected: .invalidValue, at: 24),
    .init(
      name: "INVALIDATE_PASID without PV", base: .invalidatePASID(domain: domain, pasid: PASID(7)), offset: 1,
      value: 0x00, expected: .invalidValue, at: 4),
  ]

  @Test(arguments: malformed)
  func malformedDescriptorsAreRefusedAtTheirField(_ case_: Malformed) {
    var bytes = case_.base.encode()
    bytes[case_.offset] = case_.value
    #expect {
      _ = try VIOMMUCommand(parsing: bytes)
    } throws: { error in
      guard let error = error as? WireError else { return false }
      return error.code == case_.expected && error.offset == case_.at
    }
  }

  @Test func wrongLengthsAreRefused() {
    let bytes = VIOMMUCommand.invalidateAll.encode()
    #expect(throws: WireError(.truncated, at: 24, field: "size")) {
      try VIOMMUCommand(parsing: Array(bytes.dropLast()))
    }
    #expect(throws: WireError(.truncated, at: 0, field: "opcode")) { try VIOMMUCommand(parsing: []) }
    #expect(throws: WireError(.trailingBytes, at: 32, field: "vIOMMU command descriptor")) {
      try VIOMMUCommand(parsing: bytes + [0])
    }
  }

  @Test func descriptions() {
    #expect(
      "\(Self.everyCommand[1])" == "ATTACH 03:01.0 pasid 1048575 domain 4660 root gpa 0x2000 39-bit")
    #expect("\(VIOMMUOpcode(rawValue: 0x42))" == "opcode 0x42")
  }

  // MARK: - Execution

  func refusal(_ command: VIOMMUCommand, on viommu: VIOMMU) -> Errno? {
    viommuErrno { try viommu.execute(command) }
  }

  @Test func attachAndDetachRefusals() throws {
    let rig = VIOMMURig(configuration: VIOMMU.Configuration(maximumAttachments: 2))
    let viommu = rig.viommu
    let root = PhysicalAddress(0x1_0000_0000)
    func attach(_ pasid: PASID?, domain: UInt32 = 1, root: UInt64 = 0x1_0000_0000, bits: Int = 48)
      -> VIOMMUCommand
    {
      .attach(
        requester: Self.rid, pasid: pasid, domain: DomainID(rawValue: domain), root: PhysicalAddress(root),
        inputAddressBits: bits)
    }
    #expect(refusal(attach(PASID(0)), on: viommu) == .EINVAL)
    #expect(refusal(attach(nil, root: 0x1_0000_0800), on: viommu) == .EINVAL)
    #expect(refusal(attach(nil, root: 1 << 52), on: viommu) == .EINVAL)
    #expect(refusal(attach(nil, bits: 57), on: viommu) == .EINVAL)
    #expect(viommu.attachments.isEmpty)

    #expect(refusal(attach(nil), on: viommu) == nil)
    #expect(refusal(attach(nil), on: viommu) == nil, "re-attaching the same table is a no-op")
    #expect(refusal(attach(nil, domain: 2), on: viommu) == .EBUSY)
    #expect(refusal(attach(nil, root: 0x1_0000_1000), on: viommu) == .EBUSY)
    #expect(
      refusal(attach(PASID(3), root: 0x1_0000_1000), on: viommu) == .EINVAL, "domain 1 names another table")
    #expect(refusal(attach(PASID(3), domain: 1, bits: 39), on: viommu) == .EINVAL)
    #expect(refusal(attach(PASID(3)), on: viommu) == nil)
    #expect(refusal(attach(PASID(4), domain: 2, root: 0x5000), on: viommu) == .ENOSPC)
    #expect(
      viommu.attachments == [
        VIOMMUAttachmentKey(requester: Self.rid, pasid: nil): try GuestIOTable(
          domain: DomainID(rawValue: 1), root: root, inputAddressBits: 48),
        VIOMMUAttachmentKey(requester: Self.rid, pasid: PASID(3)): try GuestIOTable(
          domain: DomainID(rawValue: 1), root: root, inputAddressBits: 48),
      ])

    #expect(refusal(.detach(requester: Self.rid, pasid: PASID(0)), on: viommu) == .EINVAL)
    #expect(refusal(.detach(requester: Self.rid, pasid: PASID(4)), on: viommu) == .ENOENT)
    #expect(refusal(.detach(requester: Self.rid, pasid: PASID(3)), on: viommu) == nil)
    #expect(refusal(.detach(requester: Self.rid, pasid: nil), on: viommu) == nil)
    // Domain 1 is free again: it may name another table now.
    #expect(refusal(attach(nil, root: 0x1_0000_1000), on: viommu) == nil)
  }

  @Test func invalidationRefusals() {
    let viommu = VIOMMURig().viommu
    func range(_ iova: UInt64, _ size: UInt64, pasid: PASID? = nil) -> VIOMMUCommand {
      .invalidateRange(domain: Self.domain, pasid: pasid, iova: IOVA(iova), size: size)
    }
    #expect(refusal(range(0x1000, 0), on: viommu) == .EINVAL)
    #expect(refusal(range(0x1800, 0x1000), on: viommu) == .EINVAL)
    #expect(refusal(range(0x1000, 0x1800), on: viommu) == .EINVAL)
    #expect(refusal(range(0xFFFF_FFFF_FFFF_E000, 0x3000), on: viommu) == .EINVAL)
    #expect(refusal(range(0x1000, 0x1000, pasid: PASID(0)), on: viommu) == .EINVAL)
    #expect(refusal(range(0xFFFF_FFFF_FFFF_F000, 0x1000), on: viommu) == nil, "ends exactly at 2^64")
    #expect(refusal(range(0, 0xFFFF_FFFF_FFFF_F000), on: viommu) == nil)
    #expect(refusal(range(1 << 48, 0x1000), on: viommu) == nil, "beyond every table: nothing to drop")
    #expect(refusal(.invalidatePASID(domain: Self.domain, pasid: PASID(0)), on: viommu) == .EINVAL)
    #expect(refusal(.invalidatePASID(domain: Self.domain, pasid: PASID(9)), on: viommu) == nil)
    #expect(refusal(.invalidateDomain(DomainID(rawValue: 99)), on: viommu) == nil)
    #expect(refusal(.invalidateAll, on: viommu) == nil)
  }
}
