// libFuzzer entry point for the vIOMMU's guest-visible interface: the command descriptor and fault
// record decoders (round trip: whatever decodes re-encodes to the same bytes), then a vIOMMU driven by
// the input as a guest would drive it — register writes, descriptors written into its command queue,
// commands executed directly, guest table writes, DMA translations. The vIOMMU may refuse anything; it
// may not crash, and after every step its registers must agree with its state and every translation
// must be one the platform's stage 2 backs with the rights the access needs. After a global
// invalidation the cache must answer exactly as an uncached nested walk.
import CoveWire
import FuzzSupport
import GuestABI
import HostPlatform
import IOMMU
import PCIe

runLibFuzzer(fuzzInput)

private func fuzzInput(_ input: [UInt8]) {
  fuzzDecoders(input)
  fuzzVIOMMU(input)
}

private func fuzzDecoders(_ input: [UInt8]) {
  for bytes in [input, Array(input.prefix(32))] {
    if let command = try? VIOMMUCommand(parsing: bytes) {
      precondition(command.encode() == bytes, "a command descriptor does not round-trip")
    }
    if let record = try? VIOMMUFaultRecord(parsing: bytes) {
      precondition(record.encode() == bytes, "a fault record does not round-trip")
      if let fault = record.fault {
        let again = VIOMMUFaultRecord(
          fault, requester: record.requester, pasid: record.pasid, access: record.access,
          domain: record.domain,
          iova: record.iova)
        precondition(again.fault == fault, "a typed fault does not survive its record")
      }
    }
  }
}

/// Guest memory for the harness: 64 guest pages at 0…0x3F000 mapped 1:1 above host 0x1_0000_0000,
/// except pages the input takes out of stage 2 or makes unreadable.
private final class HarnessMemory: GuestPhysicalMap, GuestMemoryReader {
  static let pages: UInt64 = 64
  static let hostBase: UInt64 = 0x1_0000_0000
  var words = [UInt64](repeating: 0, count: Int(pages) * 512)
  var unmapped: Set<UInt64> = []
  var refused: Set<UInt64> = []

  func hostAddress(of gpa: PhysicalAddress, for guest: GuestID) -> PhysicalAddress? {
    let page = gpa.rawValue >> 12
    guard page < Self.pages, !unmapped.contains(page) else { return nil }
    return PhysicalAddress(Self.hostBase + gpa.rawValue)
  }

  func readWord(at address: PhysicalAddress, for guest: GuestID) -> UInt64? {
    precondition(address.rawValue % 8 == 0, "unaligned read")
    let offset = address.rawValue - Self.hostBase
    precondition(
      address.rawValue >= Self.hostBase && offset < Self.pages << 12, "read outside stage 2's pages")
    guard !refused.contains(offset >> 12) else { return nil }
    return words[Int(offset >> 3)]
  }
}

/// Each record is 12 bytes: an operation byte, a selector byte, a 16-bit word index into the guest's
/// 64 pages (where the guest writes), then 8 bytes of value; all little-endian.
private func fuzzVIOMMU(_ input: [UInt8]) {
  let memory = HarnessMemory()
  let guest = GuestID(1)
  let viommu = VIOMMU(
    guest: guest, stage2: memory, memory: memory,
    configuration: VIOMMU.Configuration(faultQueueCapacity: 4, iotlbCapacity: 8, maximumAttachments: 4))
  var index = 0
  while index + 12 <= input.count {
    let operation = input[index]
    let selector = input[index + 1]
    let gpa = (UInt64(input[index + 2]) | UInt64(input[index + 3]) << 8) << 3 & 0x3_FFF8
    var value: UInt64 = 0
    for byte in 0..<8 { value |= UInt64(input[index + 4 + byte]) << (8 * UInt64(byte)) }
    index += 12
    switch operation % 8 {
    case 0:
      viommu.writeRegister(VIOMMURegister(rawValue: UInt64(selector) << 3), value)
    case 1:
      _ = viommu.readRegister(VIOMMURegister(rawValue: UInt64(selector)))
    case 2:  // the guest writes a word of its memory (tables, descriptors)
      memory.words[Int(gpa >> 3)] = value
    case 3:  // the guest writes a whole descriptor built from the value
      let command = command(selector: selector, value: value)
      let bytes = command.encode()
      for word in 0..<4 {
        var raw: UInt64 = 0
        for byte in 0..<8 { raw |= UInt64(bytes[word * 8 + byte]) << (8 * UInt64(byte)) }
        memory.words[Int((gpa & ~0x1F) >> 3) + word] = raw
      }
    case 4:
      try? viommu.execute(command(selector: selector, value: value))
    case 5:  // the platform changes stage 2 or its access checks
      let page = UInt64(selector) % HarnessMemory.pages
      if value & 1 == 0 {
        if memory.unmapped.remove(page) == nil { memory.unmapped.insert(page) }
      } else if memory.refused.remove(page) == nil {
        memory.refused.insert(page)
      }
    case 6:
      translate(viommu, memory, guest: guest, selector: selector, value: value)
    default:
      try? viommu.execute(.invalidateAll)
      translate(viommu, memory, guest: guest, selector: selector, value: value, checkCoherence: true)
    }
    checkInvariants(viommu)
  }
}

/// A command with fields taken from the input, mostly valid, sometimes not.
private func command(selector: UInt8, value: UInt64) -> VIOMMUCommand {
  let requester = RequesterID(rawValue: UInt16(selector & 3))
  let pasid: PASID? = selector & 4 == 0 ? nil : PASID(UInt32(truncatingIfNeeded: value >> 40) & 0xF)
  let domain = DomainID(rawValue: UInt32(selector >> 3) & 3)
  // A table page of the small guest; value bit 62 misaligns it.
  let root = value & 0x3_F000 | (value & 1 << 62 == 0 ? 0 : 8)
  switch selector >> 5 {
  case 0, 1:
    return .attach(
      requester: requester, pasid: pasid, domain: domain, root: PhysicalAddress(root),
      inputAddressBits: value & (1 << 63) == 0 ? 48 : 39)
  case 2: return .detach(requester: requester, pasid: pasid)
  case 3:
    return .invalidateRange(
      domain: domain, pasid: pasid, iova: IOVA(value & ~0xFFF), size: (value >> 52) << 12)
  case 4: return .invalidatePASID(domain: domain, pasid: pasid ?? PASID(1))
  case 5: return .invalidateDomain(domain)
  default: return .invalidateAll
  }
}

private func translate(
  _ viommu: VIOMMU, _ memory: HarnessMemory, guest: GuestID, selector: UInt8, value: UInt64,
  checkCoherence: Bool = false
) {
  let requester = RequesterID(rawValue: UInt16(selector & 3))
  let pasid: PASID? = selector & 4 == 0 ? nil : PASID(UInt32(selector >> 4))
  let access: IOAccess = selector & 8 == 0 ? .read : .write
  let iova = IOVA(value & 0x7F_FFFF_FFFF)
  let result = viommu.translate(requester: requester, pasid: pasid, iova: iova, access: access)
  if case .success(let translation) = result {
    precondition(
      memory.hostAddress(of: translation.guestPhysical, for: guest) == translation.hostPhysical,
      "a translation stage 2 does not back")
    precondition(
      translation.protection.contains(access.requiredProtection), "a translation without the right")
  }
  guard checkCoherence else { return }
  let key = VIOMMUAttachmentKey(requester: requester, pasid: pasid)
  guard let table = viommu.attachments[key] else {
    precondition(result == .failure(.noAttachment), "a request without attachment translated")
    return
  }
  let uncached = NestedWalk.translate(
    iova, access: access, table: table, guest: guest, stage2: memory, memory: memory)
  precondition(result == uncached, "the cache disagrees with the tables right after a global invalidation")
}

private func checkInvariants(_ viommu: VIOMMU) {
  let status = viommu.readRegister(.status)
  precondition(status & ~0xFF07 == 0, "unexpected status bits")
  precondition((status & VIOMMUStatus.commandQueueError != 0) == (viommu.commandQueueError != nil))
  let count = viommu.readRegister(.faultCount)
  precondition(count <= 4, "fault queue beyond its capacity")
  precondition((status & VIOMMUStatus.faultPending != 0) == (count > 0))
  let base = viommu.readRegister(.commandQueueBase)
  let entries: UInt64 = 128 << (base & 7)
  precondition(viommu.readRegister(.commandQueueHead) < entries, "HEAD beyond the queue")
  precondition(viommu.readRegister(.commandQueueTail) < entries, "TAIL beyond the queue")
  precondition(viommu.attachments.count <= 4, "more attachments than allowed")
}
