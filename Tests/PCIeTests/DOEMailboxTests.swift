import CoveWire
import PCIe
import Testing

@Suite("DOE mailbox registers (PCIe 6.x §6.30.2, §7.9.24)")
struct DOEMailboxTests {
  static let getVersion = DOEDataObject(protocol: .spdm, payload: [0x10, 0x84, 0x00, 0x00])
  // SPDM VERSION response: 10 04 00 00 | rsvd 00 | count 02 | 1.2 (0x1200) | 1.3 (0x1300): 10 bytes.
  static let version = DOEDataObject(
    protocol: .spdm, payload: [0x10, 0x04, 0x00, 0x00, 0x00, 0x02, 0x00, 0x12, 0x00, 0x13])

  /// Applies writes, returning the action of the last one.
  static func apply(_ writes: [DOERegisterWrite], to mailbox: inout DOEMailbox) -> [DOEMailboxAction] {
    writes.map { mailbox.writeRegister(offset: $0.offset, value: $0.value) }
  }

  static func status(_ mailbox: DOEMailbox) -> DOEStatus {
    DOEStatus(rawValue: mailbox.readRegister(offset: DOERegister.status))
  }

  @Test func capabilityRegisters() {
    let mailbox = DOEMailbox(nextCapabilityOffset: 0x170, capabilityVersion: 1)
    // ID 0x002E, version 1, next 0x170.
    #expect(mailbox.readRegister(offset: DOERegister.header) == 0x1701_002E)
    #expect(mailbox.readRegister(offset: DOERegister.capabilities) == 0)
    #expect(mailbox.readRegister(offset: DOERegister.control) == 0)
    #expect(mailbox.readRegister(offset: DOERegister.status) == 0)
    #expect(mailbox.readRegister(offset: DOERegister.readMailbox) == 0)
  }

  @Test func driverWritesAreTheObjectDWordsThenGo() {
    let writes = DOEMailboxDriver.requestWrites(Self.getVersion)
    #expect(
      writes == [
        DOERegisterWrite(offset: 0x10, value: 0x0001_0001),
        DOERegisterWrite(offset: 0x10, value: 0x0000_0003),
        DOERegisterWrite(offset: 0x10, value: 0x0000_8410),
        DOERegisterWrite(offset: 0x08, value: 0x8000_0000),
      ])
  }

  @Test func fullExchange() throws {
    var mailbox = DOEMailbox()
    let writes = DOEMailboxDriver.requestWrites(Self.getVersion)
    let actions = Self.apply(writes, to: &mailbox)
    #expect(actions.dropLast().allSatisfy { $0 == .none })
    #expect(actions.last == .deliverRequest(Self.getVersion))
    #expect(Self.status(mailbox) == .busy)
    #expect(mailbox.readRegister(offset: DOERegister.readMailbox) == 0)

    let completed = mailbox.completeResponse(Self.version)
    #expect(completed)
    #expect(Self.status(mailbox) == .dataObjectReady)

    // Read DW by DW; each write to the read mailbox advances.
    let expected = Self.version.encodeDWords()
    #expect(expected.count == 5)
    var read: [UInt32] = []
    for (index, dword) in expected.enumerated() {
      #expect(Self.status(mailbox).contains(.dataObjectReady))
      let value = mailbox.readRegister(offset: DOERegister.readMailbox)
      #expect(value == dword)
      #expect(mailbox.readRegister(offset: DOERegister.readMailbox) == dword)  // reads do not advance
      read.append(value)
      #expect(mailbox.writeRegister(offset: DOERegister.readMailbox, value: 0xDEAD_BEEF) == .none)
      if index < expected.count - 1 { #expect(Self.status(mailbox) == .dataObjectReady) }
    }
    #expect(Self.status(mailbox) == [])
    // The decoded payload keeps the 2 padding bytes; the wire bytes are identical.
    #expect(try DOEDataObject(parsingDWords: read).encode() == Self.version.encode())
    // Extra advance writes with nothing ready are ignored.
    #expect(mailbox.writeRegister(offset: DOERegister.readMailbox, value: 0) == .none)
    #expect(Self.status(mailbox) == [])
  }

  @Test func driverReadResponse() throws {
    var mailbox = DOEMailbox()
    _ = Self.apply(DOEMailboxDriver.requestWrites(Self.getVersion), to: &mailbox)
    mailbox.completeResponse(Self.version)
    var accesses: [String] = []
    let response = try DOEMailboxDriver.readResponse(
      readRegister: { offset in
        accesses.append("r\(offset)")
        return mailbox.readRegister(offset: offset)
      },
      writeRegister: { offset, value in
        accesses.append("w\(offset)")
        _ = mailbox.writeRegister(offset: offset, value: value)
      })
    #expect(response.encode() == Self.version.encode())
    #expect(response.payload == Self.version.payload + [0, 0])
    #expect(Self.status(mailbox) == [])
    // STATUS, then per DW: read mailbox, advance, STATUS (not after the last).
    #expect(accesses.prefix(4) == ["r12", "r20", "w20", "r12"])
    #expect(accesses.suffix(2) == ["r20", "w20"])
  }

  @Test func driverReportsMailboxStates() {
    var mailbox = DOEMailbox()
    #expect(throws: DOEDriverError.noResponseReady) {
      try DOEMailboxDriver.readResponse(
        readRegister: { mailbox.readRegister(offset: $0) },
        writeRegister: { _ = mailbox.writeRegister(offset: $0, value: $1) })
    }
    _ = mailbox.writeRegister(offset: DOERegister.control, value: DOEControl.go.rawValue)
    #expect(throws: DOEDriverError.mailboxError) {
      try DOEMailboxDriver.readResponse(
        readRegister: { mailbox.readRegister(offset: $0) },
        writeRegister: { _ = mailbox.writeRegister(offset: $0, value: $1) })
    }
  }

  @Test func abortMidWriteClearsEverything() {
    var mailbox = DOEMailbox()
    let writes = DOEMailboxDriver.requestWrites(Self.getVersion)
    _ = Self.apply(Array(writes.prefix(2)), to: &mailbox)
    #expect(mailbox.pendingRequestDWords == 2)
    #expect(mailbox.writeRegister(offset: DOERegister.control, value: DOEControl.abort.rawValue) == .aborted)
    #expect(mailbox.pendingRequestDWords == 0)
    #expect(Self.status(mailbox) == [])
    // A fresh request goes through after the abort.
    #expect(Self.apply(writes, to: &mailbox).last == .deliverRequest(Self.getVersion))
  }

  @Test func abortWhileBusyDropsTheLateResponse() {
    var mailbox = DOEMailbox()
    _ = Self.apply(DOEMailboxDriver.requestWrites(Self.getVersion), to: &mailbox)
    #expect(Self.status(mailbox) == .busy)
    #expect(Self.apply([DOEMailboxDriver.abort], to: &mailbox) == [.aborted])
    #expect(Self.status(mailbox) == [])
    let completed = mailbox.completeResponse(Self.version)
    #expect(!completed)
    #expect(Self.status(mailbox) == [])
    #expect(mailbox.readRegister(offset: DOERegister.readMailbox) == 0)
  }

  @Test func abortWhileResponseReadyAndAfterError() {
    var mailbox = DOEMailbox()
    _ = Self.apply(DOEMailboxDriver.requestWrites(Self.getVersion), to: &mailbox)
    mailbox.completeResponse(Self.version)
    _ = mailbox.writeRegister(offset: DOERegister.readMailbox, value: 0)
    #expect(mailbox.writeRegister(offset: DOERegister.control, value: 1) == .aborted)
    #expect(Self.status(mailbox) == [])
    #expect(mailbox.readRegister(offset: DOERegister.readMailbox) == 0)
  }

  @Test func abortWinsOverGo() {
    var mailbox = DOEMailbox()
    _ = Self.apply(Array(DOEMailboxDriver.requestWrites(Self.getVersion).dropLast()), to: &mailbox)
    let both = DOEControl([.abort, .go]).rawValue
    #expect(mailbox.writeRegister(offset: DOERegister.control, value: both) == .aborted)
    #expect(Self.status(mailbox) == [])
  }

  @Test func lengthMismatchIsDiscardedWithError() {
    var mailbox = DOEMailbox()
    // Header says 4 DWs, only 3 written.
    for dword: UInt32 in [0x0001_0001, 0x0000_0004, 0x0000_8410] {
      _ = mailbox.writeRegister(offset: DOERegister.writeMailbox, value: dword)
    }
    let action = mailbox.writeRegister(offset: DOERegister.control, value: DOEControl.go.rawValue)
    #expect(
      action
        == .discarded(
          .malformed(WireError(.lengthOutOfRange, at: 4, field: "Length (differs from the DWs present)"))))
    #expect(Self.status(mailbox) == .error)
    #expect(mailbox.pendingRequestDWords == 0)
    // GO and writes are ignored until ABORT.
    #expect(
      Self.apply(DOEMailboxDriver.requestWrites(Self.getVersion), to: &mailbox).allSatisfy { $0 == .none })
    #expect(Self.status(mailbox) == .error)
    #expect(Self.apply([DOEMailboxDriver.abort], to: &mailbox) == [.aborted])
    #expect(Self.status(mailbox) == [])
    #expect(
      Self.apply(DOEMailboxDriver.requestWrites(Self.getVersion), to: &mailbox).last
        == .deliverRequest(Self.getVersion))
  }

  @Test func silentDiscardPolicy() {
    var mailbox = DOEMailbox(setsErrorOnDiscard: false)
    for dword: UInt32 in [0x0001_0001, 0x0000_0004, 0x0000_8410] {
      _ = mailbox.writeRegister(offset: DOERegister.writeMailbox, value: dword)
    }
    guard
      case .discarded(.malformed) = mailbox.writeRegister(
        offset: DOERegister.control, value: DOEControl.go.rawValue)
    else {
      Issue.record("expected a discard")
      return
    }
    #expect(Self.status(mailbox) == [])
    // The next request works without an ABORT.
    #expect(
      Self.apply(DOEMailboxDriver.requestWrites(Self.getVersion), to: &mailbox).last
        == .deliverRequest(Self.getVersion))
  }

  @Test func goWithNothingWrittenIsMalformed() {
    var mailbox = DOEMailbox()
    let action = mailbox.writeRegister(offset: DOERegister.control, value: DOEControl.go.rawValue)
    #expect(action == .discarded(.malformed(WireError(.truncated, at: 0, field: "Vendor ID"))))
    #expect(Self.status(mailbox) == .error)
  }

  @Test func writesWhileBusyAreDroppedAndSetError() {
    var mailbox = DOEMailbox()
    _ = Self.apply(DOEMailboxDriver.requestWrites(Self.getVersion), to: &mailbox)
    #expect(
      mailbox.writeRegister(offset: DOERegister.writeMailbox, value: 0x1234) == .discarded(.writeWhileBusy))
    #expect(Self.status(mailbox) == [.busy, .error])
    #expect(mailbox.pendingRequestDWords == 0)
    // GO while busy is ignored.
    #expect(mailbox.writeRegister(offset: DOERegister.control, value: DOEControl.go.rawValue) == .none)
    // The outstanding request can still complete; ERROR stays until ABORT.
    let completed = mailbox.completeResponse(Self.version)
    #expect(completed)
    #expect(Self.status(mailbox) == [.dataObjectReady, .error])
  }

  @Test func writeBufferOverflowSetsError() {
    var mailbox = DOEMailbox()
    // A header claiming the maximum (length 0 = 2^18 DWs), then exactly that many DWs: accepted.
    _ = mailbox.writeRegister(offset: DOERegister.writeMailbox, value: 0x0001_0001)
    _ = mailbox.writeRegister(offset: DOERegister.writeMailbox, value: 0)
    for _ in 2..<DOEDataObject.maxDWords {
      _ = mailbox.writeRegister(offset: DOERegister.writeMailbox, value: 0)
    }
    #expect(mailbox.pendingRequestDWords == DOEDataObject.maxDWords)
    // One more DW cannot belong to any object.
    #expect(
      mailbox.writeRegister(offset: DOERegister.writeMailbox, value: 0) == .discarded(.writeBufferOverflow))
    #expect(Self.status(mailbox) == .error)
    #expect(mailbox.pendingRequestDWords == 0)
    #expect(mailbox.writeRegister(offset: DOERegister.writeMailbox, value: 0) == .none)
    #expect(mailbox.pendingRequestDWords == 0)
    #expect(mailbox.writeRegister(offset: DOERegister.control, value: DOEControl.go.rawValue) == .none)
  }

  @Test func silentOverflowDropsTheObjectUntilGo() {
    var mailbox = DOEMailbox(setsErrorOnDiscard: false)
    for _ in 0..<DOEDataObject.maxDWords {
      _ = mailbox.writeRegister(offset: DOERegister.writeMailbox, value: 0)
    }
    let overflow = mailbox.writeRegister(offset: DOERegister.writeMailbox, value: 0)
    #expect(overflow == .discarded(.writeBufferOverflow))
    #expect(Self.status(mailbox) == [])
    // The rest of the oversized object is ignored, and its GO delivers nothing.
    _ = mailbox.writeRegister(offset: DOERegister.writeMailbox, value: 0x0001_0001)
    #expect(mailbox.pendingRequestDWords == 0)
    let go = mailbox.writeRegister(offset: DOERegister.control, value: DOEControl.go.rawValue)
    #expect(go == .none)
    // The next object goes through.
    let actions = Self.apply(DOEMailboxDriver.requestWrites(Self.getVersion), to: &mailbox)
    #expect(actions.last == .deliverRequest(Self.getVersion))
  }

  @Test func maximumObjectIsDelivered() {
    var mailbox = DOEMailbox()
    let object = DOEDataObject(
      protocol: .spdm, payload: [UInt8](repeating: 7, count: DOEDataObject.maxPayloadBytes))
    #expect(Self.apply(DOEMailboxDriver.requestWrites(object), to: &mailbox).last == .deliverRequest(object))
  }

  @Test func failRequestSetsError() {
    var mailbox = DOEMailbox()
    _ = Self.apply(DOEMailboxDriver.requestWrites(DOEDiscoveryRequest(index: 9).dataObject()), to: &mailbox)
    let failed = mailbox.failRequest()
    #expect(failed)
    #expect(Self.status(mailbox) == .error)
    let failedAgain = mailbox.failRequest()
    #expect(!failedAgain)
  }

  @Test func discoveryOverTheMailbox() throws {
    var mailbox = DOEMailbox()
    var found: [DOEProtocol] = []
    var index: UInt8 = 0
    repeat {
      let actions = Self.apply(
        DOEMailboxDriver.requestWrites(DOEDiscoveryRequest(index: index).dataObject()), to: &mailbox)
      guard case .deliverRequest(let request) = actions.last else {
        Issue.record("no request delivered")
        return
      }
      let reply = try #require(try DOEDiscoveryTable.standard.respond(to: request))
      mailbox.completeResponse(reply)
      let object = try DOEMailboxDriver.readResponse(
        readRegister: { mailbox.readRegister(offset: $0) },
        writeRegister: { _ = mailbox.writeRegister(offset: $0, value: $1) })
      let response = try DOEDiscoveryResponse(parsing: object)
      found.append(response.dataProtocol)
      index = response.nextIndex
    } while index != 0 && found.count < 8
    #expect(found == [.discovery, .spdm, .securedSPDM])
  }

  @Test func assemblerRejectsBadLengths() throws {
    var assembler = DOEResponseAssembler()
    let partial = try assembler.append(0x0001_0001)
    #expect(partial == nil)
    #expect(throws: WireError(.lengthOutOfRange, at: 4, field: "Length (less than the 2 header DWs)")) {
      try assembler.append(1)
    }
    var reserved = DOEResponseAssembler()
    _ = try? reserved.append(0x0001_0001)
    #expect(throws: WireError(.invalidValue, at: 4, field: "Length (reserved bits 31:18)")) {
      try reserved.append(0x0004_0003)
    }
  }
}
