// libFuzzer entry point for the PCIe DOE layer: data object and discovery decoders, the read-side
// assembler, BDF text parsing, and a DOE mailbox driven by the input as a sequence of register
// accesses. A crash, an ASan report, or a failed invariant below is a bug; typed errors are fine.
import FuzzSupport
import PCIe

runLibFuzzer(fuzzInput)

private func fuzzInput(_ bytes: [UInt8]) {
  fuzzDataObject(bytes)
  fuzzDiscovery(bytes)
  fuzzAssembler(bytes)
  fuzzBDF(bytes)
  fuzzMailbox(bytes)
}

/// Decoding then encoding gives back the input, except the reserved byte of Data Object Header 1,
/// which the encoder writes as zero.
private func fuzzDataObject(_ bytes: [UInt8]) {
  guard let object = try? DOEDataObject(parsing: bytes) else { return }
  var expected = bytes
  expected[3] = 0
  precondition(object.encode() == expected, "DOE object does not round-trip")
  precondition(object.lengthInDWords == bytes.count / 4, "DOE length disagrees with the byte count")
}

private func fuzzDiscovery(_ bytes: [UInt8]) {
  if let request = try? DOEDiscoveryRequest(parsing: bytes) {
    precondition(request.encode().prefix(2) == bytes.prefix(2), "discovery request does not round-trip")
    if let response = DOEDiscoveryTable.standard.response(to: request) {
      precondition(try! DOEDiscoveryResponse(parsing: response.encode()) == response)
    }
  }
  if let response = try? DOEDiscoveryResponse(parsing: bytes) {
    precondition(response.encode() == bytes, "discovery response does not round-trip")
  }
  if let object = try? DOEDataObject(parsing: bytes) {
    _ = try? DOEDiscoveryTable.standard.respond(to: object)
  }
}

private func fuzzAssembler(_ bytes: [UInt8]) {
  var assembler = DOEResponseAssembler()
  for dword in dwords(bytes) {
    do {
      if let object = try assembler.append(dword) {
        precondition(object.lengthInDWords >= 2)
      }
    } catch {
      assembler = DOEResponseAssembler()  // after an error the owner starts over
    }
  }
}

private func fuzzBDF(_ bytes: [UInt8]) {
  let text = String(decoding: bytes.prefix(16), as: UTF8.self)
  if let bdf = BDF(text) {
    precondition(BDF(bdf.description) == bdf, "BDF does not round-trip")
    precondition(RequesterID(bdf).bdf(segment: bdf.segment) == bdf, "Requester ID does not round-trip")
  }
}

/// Each 5-byte record is one operation: the low 3 bits of the first byte pick a register (0...5)
/// or a device-side event (6 complete, 7 fail), bit 3 picks read or write, the next 4 bytes are the
/// value. The first byte of the input picks the discard policy.
private func fuzzMailbox(_ bytes: [UInt8]) {
  guard let first = bytes.first else { return }
  var mailbox = DOEMailbox(setsErrorOnDiscard: first & 1 == 0)
  var pending: DOEDataObject?
  var index = 1
  while index + 5 <= bytes.count {
    let op = bytes[index]
    let value = le32(bytes, at: index + 1)
    index += 5
    let selector = Int(op & 7)
    switch selector {
    case 6:
      if let request = pending {
        let reply = (try? DOEDiscoveryTable.standard.respond(to: request)) ?? nil
        mailbox.completeResponse(reply ?? request)  // echo anything that is not discovery
        pending = nil
      }
    case 7:
      mailbox.failRequest()
      pending = nil
    default:
      let offset = selector * 4
      if op & 8 != 0 {
        _ = mailbox.readRegister(offset: offset)
      } else {
        switch mailbox.writeRegister(offset: offset, value: value) {
        case .deliverRequest(let object): pending = object
        case .aborted: pending = nil
        case .none, .discarded: break
        }
      }
    }
    checkInvariants(mailbox)
  }
  // Drain whatever response is ready, as a driver would.
  _ = try? DOEMailboxDriver.readResponse(
    readRegister: { mailbox.readRegister(offset: $0) },
    writeRegister: { _ = mailbox.writeRegister(offset: $0, value: $1) })
  checkInvariants(mailbox)
}

private func checkInvariants(_ mailbox: DOEMailbox) {
  let status = DOEStatus(rawValue: mailbox.readRegister(offset: DOERegister.status))
  precondition(
    status.subtracting([.busy, .error, .dataObjectReady]).isEmpty, "unexpected status bits")
  precondition(!status.isSuperset(of: [.busy, .dataObjectReady]), "BUSY and DATA_OBJECT_READY both set")
  precondition(mailbox.readRegister(offset: DOERegister.control) == 0, "control must read 0")
  precondition(mailbox.pendingRequestDWords <= DOEDataObject.maxDWords, "write buffer over its cap")
  if !status.contains(.dataObjectReady) {
    precondition(mailbox.readRegister(offset: DOERegister.readMailbox) == 0)
  }
}

private func dwords(_ bytes: [UInt8]) -> [UInt32] {
  var out: [UInt32] = []
  for offset in stride(from: 0, to: bytes.count - bytes.count % 4, by: 4) {
    out.append(le32(bytes, at: offset))
  }
  return out
}

private func le32(_ bytes: [UInt8], at offset: Int) -> UInt32 {
  var value: UInt32 = 0
  for shift in 0..<4 { value |= UInt32(bytes[offset + shift]) << (8 * UInt32(shift)) }
  return value
}
