public import CoveWire

/// Register offsets of the DOE Extended Capability, relative to the capability's start in
/// configuration space (PCIe 6.x §7.9.24).
public enum DOERegister {
  /// Extended capability header: ID 0x002E in bits 15:0, version 19:16, next offset 31:20.
  public static let header = 0x00
  /// DOE Capabilities (PCIe 6.x §7.9.24.2): interrupt support bit 0, message number bits 11:1.
  public static let capabilities = 0x04
  /// DOE Control (PCIe 6.x §7.9.24.3): ABORT bit 0, INT_EN bit 1, GO bit 31.
  public static let control = 0x08
  /// DOE Status (PCIe 6.x §7.9.24.4): BUSY bit 0, INT_STATUS bit 1, ERROR bit 2,
  /// DATA_OBJECT_READY bit 31.
  public static let status = 0x0C
  /// DOE Write Data Mailbox (PCIe 6.x §7.9.24.5): each write appends one request DW.
  public static let writeMailbox = 0x10
  /// DOE Read Data Mailbox (PCIe 6.x §7.9.24.6): reads the current response DW; any write advances.
  public static let readMailbox = 0x14
  /// Size of the capability structure in bytes.
  public static let capabilitySize = 0x18

  /// The DOE extended capability ID (PCIe 6.x §7.9.24.1).
  public static let capabilityID: UInt16 = 0x002E
}

/// DOE Control register bits (PCIe 6.x §7.9.24.3).
public struct DOEControl: OptionSet, Hashable, Sendable {
  public var rawValue: UInt32
  public init(rawValue: UInt32) { self.rawValue = rawValue }

  /// DOE Abort: discard everything in flight and return to idle. Reads as 0.
  public static let abort = DOEControl(rawValue: 1 << 0)
  /// DOE Interrupt Enable. Hardwired to 0 in Cove, which reports no interrupt support.
  public static let interruptEnable = DOEControl(rawValue: 1 << 1)
  /// DOE Go: the request in the write mailbox is complete; process it. Reads as 0.
  public static let go = DOEControl(rawValue: 1 << 31)
}

/// DOE Status register bits (PCIe 6.x §7.9.24.4).
public struct DOEStatus: OptionSet, Hashable, Sendable {
  public var rawValue: UInt32
  public init(rawValue: UInt32) { self.rawValue = rawValue }

  /// DOE Busy: the instance cannot take a new data object (it is processing one).
  public static let busy = DOEStatus(rawValue: 1 << 0)
  /// DOE Interrupt Status. Always 0 in Cove (no interrupt support).
  // swift-format-ignore: DontRepeatTypeInStaticProperties
  // (the spec's name for the bit)
  public static let interruptStatus = DOEStatus(rawValue: 1 << 1)
  /// DOE Error: a received object could not be processed; cleared only by ABORT.
  public static let error = DOEStatus(rawValue: 1 << 2)
  /// Data Object Ready: a response is waiting in the read mailbox.
  public static let dataObjectReady = DOEStatus(rawValue: 1 << 31)
}

/// What the mailbox's owner must do after a register write.
public enum DOEMailboxAction: Hashable, Sendable {
  /// Nothing: the write only changed mailbox state (or was ignored).
  case none
  /// GO was written with a complete, well-formed object. The mailbox is now BUSY; the owner hands
  /// the object to its responder and later calls ``DOEMailbox/completeResponse(_:)`` or
  /// ``DOEMailbox/failRequest()``.
  case deliverRequest(DOEDataObject)
  /// ABORT was written: every buffer and status bit was cleared. A response still being prepared
  /// for the aborted request is dropped when it arrives.
  case aborted
  /// A request was thrown away; the owner may log why. ERROR is set unless the mailbox was built
  /// with `setsErrorOnDiscard: false`.
  case discarded(DOEMailboxDiscard)
}

/// Why the mailbox threw a request away.
public enum DOEMailboxDiscard: Hashable, Sendable {
  /// At GO, the DWs written do not form a valid object: too few DWs, reserved length bits, or a
  /// length that differs from the DWs written (PCIe 6.x §6.30.1: such an object is discarded).
  case malformed(WireError)
  /// More DWs were written than the largest object holds, 2^18 (PCIe 6.x §6.30.1).
  case writeBufferOverflow
  /// The write mailbox was written while BUSY, when the instance cannot take a new object
  /// (PCIe 6.x §7.9.24.4, DOE Busy). The DW was dropped.
  case writeWhileBusy
}

/// The register-level model of one DOE mailbox (PCIe 6.x §6.30.2, §7.9.24), as a device sees it.
///
/// A state machine that does no I/O: config-space accesses come in through ``readRegister(offset:)``
/// and ``writeRegister(offset:value:)``; a write that needs the device to act returns a
/// ``DOEMailboxAction``; the device's responder answers with ``completeResponse(_:)``.
///
/// The protocol, from the host driver's side (PCIe 6.x §6.30.2):
/// 1. Wait for BUSY clear; write the request DW by DW to the write mailbox; write GO.
/// 2. The instance sets BUSY while it works, then sets DATA_OBJECT_READY and clears BUSY.
/// 3. Read the response DW by DW from the read mailbox, writing the read mailbox after each DW to
///    advance; DATA_OBJECT_READY clears once the last DW has been consumed.
/// 4. ABORT at any point discards everything and clears BUSY, ERROR and DATA_OBJECT_READY.
///
/// Cove's choices where the spec leaves room: no interrupt support (CAP reads 0, INT_EN and
/// INT_STATUS read 0); writes to the write mailbox while BUSY are dropped and set ERROR; GO while
/// BUSY or ERROR is ignored (the driver must ABORT first); a write to the read mailbox with no
/// response ready is ignored; reading the read mailbox with no response ready returns 0.
public struct DOEMailbox: Sendable {
  /// Offset of the next extended capability (header bits 31:20); 0 ends the list.
  public let nextCapabilityOffset: UInt16
  /// Capability version (header bits 19:16).
  public let capabilityVersion: UInt8
  /// Whether a discarded request sets ERROR. PCIe 6.x §6.30.1 says an object whose length disagrees
  /// with its DW count is "silently discarded"; Cove sets ERROR by default so a driver fails fast
  /// instead of waiting out the 1-second DOE timeout, and `false` reproduces the silent behaviour.
  public let setsErrorOnDiscard: Bool

  private var status: DOEStatus = []
  /// Request DWs written so far.
  private var writeBuffer: [UInt32] = []
  /// Set after an overflow while `setsErrorOnDiscard` is false: ignore DWs until GO or ABORT.
  private var discardingWrites = false
  /// The response being read, and the index of the DW the read mailbox shows.
  private var readBuffer: [UInt32] = []
  private var readIndex = 0

  public init(
    nextCapabilityOffset: UInt16 = 0, capabilityVersion: UInt8 = 1, setsErrorOnDiscard: Bool = true
  ) {
    precondition(nextCapabilityOffset < 0x1000, "extended capability offsets are 12 bits")
    precondition(capabilityVersion < 0x10, "capability version is 4 bits")
    precondition(nextCapabilityOffset & 3 == 0, "capability offsets are DW aligned")
    self.nextCapabilityOffset = nextCapabilityOffset
    self.capabilityVersion = capabilityVersion
    self.setsErrorOnDiscard = setsErrorOnDiscard
  }

  /// The status bits, as the status register reads.
  public var currentStatus: DOEStatus { status }
  /// DWs written to the write mailbox since the last GO or ABORT.
  public var pendingRequestDWords: Int { writeBuffer.count }

  /// Reads a register. Reads have no side effects (the read mailbox advances on a write, not a
  /// read). `offset` must be a DW-aligned offset inside the capability; routing other accesses
  /// here is a bug in the owner's config-space decoder.
  public func readRegister(offset: Int) -> UInt32 {
    Self.checkOffset(offset)
    switch offset {
    case DOERegister.header:
      return UInt32(DOERegister.capabilityID) | UInt32(capabilityVersion) << 16
        | UInt32(nextCapabilityOffset) << 20
    case DOERegister.capabilities:
      return 0  // no interrupt support, message number 0
    case DOERegister.control:
      return 0  // ABORT and GO read as 0; INT_EN hardwired to 0
    case DOERegister.status:
      return status.rawValue
    case DOERegister.readMailbox:
      guard status.contains(.dataObjectReady), readIndex < readBuffer.count else { return 0 }
      return readBuffer[readIndex]
    default:
      return 0  // the write mailbox reads as 0
    }
  }

  /// Writes a register and says what the owner must do about it. `offset` must be a DW-aligned
  /// offset inside the capability.
  public mutating func writeRegister(offset: Int, value: UInt32) -> DOEMailboxAction {
    Self.checkOffset(offset)
    switch offset {
    case DOERegister.control:
      let control = DOEControl(rawValue: value)
      if control.contains(.abort) {
        abort()
        return .aborted
      }
      if control.contains(.go) { return go() }
      return .none
    case DOERegister.writeMailbox:
      return appendRequestDWord(value)
    case DOERegister.readMailbox:
      advanceReadMailbox()
      return .none
    default:
      return .none  // header, CAP and STATUS hold nothing writable without interrupt support
    }
  }

  /// Puts the response to the delivered request in the read mailbox: DATA_OBJECT_READY set, BUSY
  /// clear. Returns false, dropping the response, when no request is outstanding — the host aborted
  /// it meanwhile, which is the host's right, not an error.
  @discardableResult
  public mutating func completeResponse(_ object: DOEDataObject) -> Bool {
    guard status.contains(.busy) else { return false }
    readBuffer = object.encodeDWords()
    readIndex = 0
    status.remove(.busy)
    status.insert(.dataObjectReady)
    return true
  }

  /// Reports that the delivered request gets no response (unsupported protocol, malformed payload,
  /// out-of-range discovery index): ERROR set, BUSY clear (PCIe 6.x §7.9.24.4, DOE Error). Returns
  /// false when no request is outstanding.
  @discardableResult
  public mutating func failRequest() -> Bool {
    guard status.contains(.busy) else { return false }
    status.remove(.busy)
    status.insert(.error)
    return true
  }

  // MARK: - Transitions

  private mutating func abort() {
    status = []
    writeBuffer = []
    discardingWrites = false
    readBuffer = []
    readIndex = 0
  }

  private mutating func appendRequestDWord(_ value: UInt32) -> DOEMailboxAction {
    if status.contains(.busy) {
      status.insert(.error)
      return .discarded(.writeWhileBusy)
    }
    // After an error the object being written is already lost; only ABORT recovers.
    if status.contains(.error) || discardingWrites { return .none }
    // Cap: no object exceeds 2^18 DWs (PCIe 6.x §6.30.1), so the next DW cannot belong to a valid one.
    guard writeBuffer.count < DOEDataObject.maxDWords else {
      writeBuffer = []
      flagDiscard()
      return .discarded(.writeBufferOverflow)
    }
    writeBuffer.append(value)
    return .none
  }

  private mutating func go() -> DOEMailboxAction {
    if status.contains(.busy) || status.contains(.error) { return .none }
    if discardingWrites {
      discardingWrites = false
      return .none  // the overflow was already reported
    }
    let dwords = writeBuffer
    writeBuffer = []
    let object: DOEDataObject
    do {
      object = try DOEDataObject(parsingDWords: dwords)
    } catch {
      flagDiscard()
      discardingWrites = false
      return .discarded(.malformed(error))
    }
    // A new request abandons any response the driver did not finish reading.
    readBuffer = []
    readIndex = 0
    status.remove(.dataObjectReady)
    status.insert(.busy)
    return .deliverRequest(object)
  }

  private mutating func flagDiscard() {
    if setsErrorOnDiscard {
      status.insert(.error)
    } else {
      discardingWrites = true
    }
  }

  private mutating func advanceReadMailbox() {
    guard status.contains(.dataObjectReady) else { return }
    readIndex += 1
    if readIndex >= readBuffer.count {
      readBuffer = []
      readIndex = 0
      status.remove(.dataObjectReady)
    }
  }

  private static func checkOffset(_ offset: Int) {
    precondition(
      offset >= 0 && offset < DOERegister.capabilitySize && offset & 3 == 0,
      "DOE register offset \(offset) is not a DW inside the capability")
  }
}
