public import CoveWire

/// One 32-bit register write, at an offset relative to the DOE capability.
public struct DOERegisterWrite: Hashable, Sendable, CustomStringConvertible {
  public var offset: Int
  public var value: UInt32

  public init(offset: Int, value: UInt32) {
    self.offset = offset
    self.value = value
  }

  public var description: String {
    "write +0x\(String(offset, radix: 16)) = 0x\(String(value, radix: 16))"
  }
}

/// Why a host driver could not read a response from a DOE mailbox.
public enum DOEDriverError: Error, Hashable, Sendable {
  /// DOE Error was set: the instance rejected the request (PCIe 6.x §7.9.24.4). Recovery is ABORT.
  case mailboxError
  /// DATA_OBJECT_READY was clear: there is no response to read (yet).
  case noResponseReady
  /// The DWs read do not form a valid object, or DATA_OBJECT_READY cleared before the object's
  /// length was reached.
  case malformedResponse(WireError)
}

/// What a host DOE driver does, as pure functions over register accesses (PCIe 6.x §6.30.2), so an
/// in-memory transport moves exactly the DWs a real driver would, and tests can assert on them.
public enum DOEMailboxDriver {
  /// The writes that submit `object`: each DW to the write mailbox, in order, then GO. The driver
  /// must have seen BUSY clear first (PCIe 6.x §6.30.2).
  public static func requestWrites(_ object: DOEDataObject) -> [DOERegisterWrite] {
    var writes = object.encodeDWords().map {
      DOERegisterWrite(offset: DOERegister.writeMailbox, value: $0)
    }
    writes.append(DOERegisterWrite(offset: DOERegister.control, value: DOEControl.go.rawValue))
    return writes
  }

  /// The write that consumes the current read-mailbox DW (any value works; 0 is conventional).
  public static let advanceReadMailbox = DOERegisterWrite(offset: DOERegister.readMailbox, value: 0)

  /// The write that aborts whatever the mailbox is doing.
  public static let abort = DOERegisterWrite(
    offset: DOERegister.control, value: DOEControl.abort.rawValue)

  /// Reads one response DW by DW, the way a driver does: check STATUS, then for each DW read the
  /// read mailbox and write it to advance, until the object's length is reached.
  ///
  /// The closures are the register accessors (offsets relative to the capability), so the same code
  /// drives a ``DOEMailbox`` in memory or a real config space.
  public static func readResponse(
    readRegister: (Int) -> UInt32,
    writeRegister: (Int, UInt32) -> Void
  ) throws(DOEDriverError) -> DOEDataObject {
    let status = DOEStatus(rawValue: readRegister(DOERegister.status))
    if status.contains(.error) { throw .mailboxError }
    guard status.contains(.dataObjectReady) else { throw .noResponseReady }
    var assembler = DOEResponseAssembler()
    while true {
      let dword = readRegister(DOERegister.readMailbox)
      writeRegister(advanceReadMailbox.offset, advanceReadMailbox.value)
      do {
        if let object = try assembler.append(dword) { return object }
      } catch {
        throw .malformedResponse(error)
      }
      // The device stopped offering DWs before the object ended: a short response.
      let after = DOEStatus(rawValue: readRegister(DOERegister.status))
      guard after.contains(.dataObjectReady) else {
        throw .malformedResponse(
          WireError(.truncated, at: assembler.dwordCount * 4, field: "DOE data object DW"))
      }
    }
  }
}

/// Rebuilds a data object from DWs arriving one at a time (the read mailbox side of a driver).
///
/// The second DW gives the length, so the assembler knows when the object is complete; it never
/// holds more than the 2^18 DWs an object can have (PCIe 6.x §6.30.1).
public struct DOEResponseAssembler: Sendable {
  private var dwords: [UInt32] = []
  private var expected: Int?

  public init() {}

  /// DWs received so far.
  public var dwordCount: Int { dwords.count }

  /// Adds one DW. Returns the object once its last DW arrives, nil while more are needed. Throws when
  /// the length DW is invalid (reserved bits set, or less than the 2 header DWs).
  public mutating func append(_ dword: UInt32) throws(WireError) -> DOEDataObject? {
    precondition(expected.map { dwords.count < $0 } ?? true, "DOE object already complete")
    dwords.append(dword)
    if dwords.count == 2 {
      guard dword & ~DOEDataObject.lengthMask == 0 else {
        throw WireError(.invalidValue, at: 4, field: "Length (reserved bits 31:18)")
      }
      // 0 encodes 2^18, the maximum; a length of 1 cannot even hold the header (PCIe 6.x §6.30.1).
      let length = dword == 0 ? DOEDataObject.maxDWords : Int(dword)
      guard length >= 2 else {
        throw WireError(.lengthOutOfRange, at: 4, field: "Length (less than the 2 header DWs)")
      }
      expected = length
    }
    guard let expected, dwords.count == expected else { return nil }
    let complete = dwords
    self = DOEResponseAssembler()
    return try DOEDataObject(parsingDWords: complete)
  }
}
