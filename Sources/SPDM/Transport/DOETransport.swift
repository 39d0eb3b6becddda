import CoveWire
public import PCIe

/// The device side of SPDM over PCIe DOE (PCIe 6.x §6.30, the CMA/SPDM binding DSP0274 over DOE):
/// the DSM function's DOE mailbox registers, its discovery table, and the SPDM responder behind it.
///
/// The host only touches registers; a GO with a complete object makes the endpoint serve it at once
/// (the emulated device is never slow), so the next STATUS read shows DATA_OBJECT_READY.
public struct SPDMDOEEndpoint {
  public private(set) var mailbox: DOEMailbox
  public var responder: SPDMResponder
  public let discovery: DOEDiscoveryTable
  /// Objects answered, and objects refused (mailbox ERROR), for traces and tests.
  public private(set) var objectsServed = 0
  public private(set) var objectsRefused = 0

  public init(
    responder: SPDMResponder, discovery: DOEDiscoveryTable = .standard, mailbox: DOEMailbox = DOEMailbox()
  ) {
    self.responder = responder
    self.discovery = discovery
    self.mailbox = mailbox
    // DOE pads every object to a DW, so plain SPDM requests may carry up to 3 zero bytes after them.
    self.responder.allowsTransportPadding = true
  }

  public func readRegister(offset: Int) -> UInt32 {
    mailbox.readRegister(offset: offset)
  }

  public mutating func writeRegister(offset: Int, value: UInt32) {
    switch mailbox.writeRegister(offset: offset, value: value) {
    case .deliverRequest(let object):
      if let response = serve(object) {
        mailbox.completeResponse(response)
        objectsServed += 1
      } else {
        mailbox.failRequest()
        objectsRefused += 1
      }
    case .none, .aborted, .discarded:
      break
    }
  }

  /// Answers one whole request object: discovery, SPDM, or secured SPDM; nil means "no response"
  /// (the mailbox would set ERROR). The register path calls this on GO; a transport that moves whole
  /// objects (e.g. the spdm-emu socket protocol) calls it directly.
  public mutating func serve(_ object: DOEDataObject) -> DOEDataObject? {
    guard object.vendorID == DOEProtocol.pciSIGVendorID else { return nil }
    switch DOEDataObjectType(rawValue: object.type) {
    case .discovery:
      guard let request = try? DOEDiscoveryRequest(parsing: object) else { return nil }
      return discovery.response(to: request)?.dataObject()
    case .spdm:
      guard case .plain(let response)? = responder.respond(to: .plain(object.payload)) else { return nil }
      return DOEDataObject(protocol: .spdm, payload: response)
    case .securedSPDM:
      switch responder.respond(to: .secured(object.payload)) {
      case .secured(let record)?: return DOEDataObject(protocol: .securedSPDM, payload: record)
      case .plain(let error)?: return DOEDataObject(protocol: .spdm, payload: error)
      case nil: return nil
      }
    default:
      return nil
    }
  }
}

/// The registers of one DOE capability (PCIe 6.x §7.9.24) as the host reaches them: the device's
/// endpoint directly, or a function's configuration space that routes its DOE window to the mailbox.
public protocol DOERegisterPort {
  /// Reads the register at `offset` from the start of the DOE capability (reads have no side effects).
  func readDOERegister(offset: Int) -> UInt32
  /// Writes the register at `offset` from the start of the DOE capability.
  mutating func writeDOERegister(offset: Int, value: UInt32)
}

/// Moves one whole DOE object to a device and returns the device's answer: the unit a DOE
/// mailbox, a socket carrying DOE framing, or a fault-injecting link in between exchanges.
public protocol DOEObjectExchange {
  mutating func exchange(object: DOEDataObject) throws(SPDMRequesterError) -> DOEDataObject
}

extension SPDMDOEEndpoint: DOERegisterPort {
  public func readDOERegister(offset: Int) -> UInt32 { readRegister(offset: offset) }
  public mutating func writeDOERegister(offset: Int, value: UInt32) {
    writeRegister(offset: offset, value: value)
  }
}

/// The host side: a TSM's DOE driver that moves each SPDM message through a mailbox's registers
/// exactly as a kernel driver would (PCIe 6.x §6.30.2): wait for BUSY clear, write the object one DW
/// at a time, GO, poll for DATA_OBJECT_READY, read the response DW by DW, advancing after each.
public struct DOEMailboxTransport<Port: DOERegisterPort>: SPDMRequesterTransport, DOEObjectExchange {
  public var port: Port
  /// Every object sent and received, in order (the pcap writer's input).
  public private(set) var objects: [DOEDataObject] = []
  /// Register accesses performed (writes and reads), to show the driver did the work.
  public private(set) var registerAccesses = 0
  /// Told about every data object as it crosses the mailbox, in order: its wire bytes (header
  /// included, payload padded to a DW, exactly one DOE object) and whether it is a request (true,
  /// host → device) or a response. What a capture (`--pcap`, link type 292) is made from. Nil by
  /// default; the transport moves the same objects with or without it, and it is called only for
  /// objects that reached the mailbox (a request once all its DWs are written, a response once
  /// whole).
  public var onObject: ((_ bytes: [UInt8], _ isRequest: Bool) -> Void)?

  public init(port: Port) {
    self.port = port
  }

  /// One request object in, one response object out, through the registers.
  public mutating func exchange(object: DOEDataObject) throws(SPDMRequesterError) -> DOEDataObject {
    // Record the object as the wire carries it: payload zero-padded to a whole DW.
    let object = object.paddedToDW()
    var status = DOEStatus(rawValue: read(DOERegister.status))
    if status.contains(.busy) || status.contains(.error) || status.contains(.dataObjectReady) {
      abort()
      status = DOEStatus(rawValue: read(DOERegister.status))
      guard !status.contains(.busy) else { throw .transport("DOE mailbox stays BUSY after ABORT") }
    }
    for access in DOEMailboxDriver.requestWrites(object) { write(access) }
    objects.append(object)
    onObject?(object.encode(), true)
    status = DOEStatus(rawValue: read(DOERegister.status))
    if status.contains(.error) {
      abort()
      throw .transport("DOE ERROR: the device refused the \(DOEDataObjectType(rawValue: object.type)) object")
    }
    guard status.contains(.dataObjectReady) else {
      throw .timeout("DOE: no response (DATA_OBJECT_READY clear)")
    }
    var assembler = DOEResponseAssembler()
    // The DWs as read, for the observer: the capture keeps reserved header bits the decode drops.
    var observed: [UInt32] = []
    // The response is at most 2^18 DWs (PCIe 6.x §6.30.1); stop there even if READY stays set.
    for _ in 0..<DOEDataObject.maxDWords {
      guard DOEStatus(rawValue: read(DOERegister.status)).contains(.dataObjectReady) else { break }
      let dword = read(DOERegister.readMailbox)
      write(DOEMailboxDriver.advanceReadMailbox)
      if onObject != nil { observed.append(dword) }
      do {
        if let response = try assembler.append(dword) {
          objects.append(response)
          onObject?(doeLittleEndianBytes(observed), false)
          return response
        }
      } catch {
        abort()
        throw .transport("DOE response malformed: \(error)")
      }
    }
    throw .transport("DOE response ended early after \(assembler.dwordCount) DWs")
  }

  public mutating func exchange(_ message: SPDMTransportMessage) throws(SPDMRequesterError)
    -> SPDMTransportMessage
  {
    try SPDMTransportMessage(doeResponse: try exchange(object: DOEDataObject(carrying: message)))
  }

  /// DOE Abort (PCIe 6.x §6.30.2): the mailbox drops whatever it holds, in either direction.
  public mutating func abort() {
    write(DOEMailboxDriver.abort)
  }

  /// DOE discovery (PCIe 6.x §6.30.1.1): walks the table from index 0 until next index is 0.
  public mutating func discoverProtocols() throws(SPDMRequesterError) -> [DOEProtocol] {
    try DOEDiscovery.walk { request throws(SPDMRequesterError) in try exchange(object: request) }
  }

  private mutating func read(_ offset: Int) -> UInt32 {
    registerAccesses += 1
    return port.readDOERegister(offset: offset)
  }

  private mutating func write(_ access: DOERegisterWrite) {
    registerAccesses += 1
    port.writeDOERegister(offset: access.offset, value: access.value)
  }
}

/// The mailbox transport straight onto a device's endpoint (no configuration space in between).
public typealias DOERequesterTransport = DOEMailboxTransport<SPDMDOEEndpoint>

extension DOEMailboxTransport where Port == SPDMDOEEndpoint {
  public init(endpoint: SPDMDOEEndpoint) { self.init(port: endpoint) }

  public var endpoint: SPDMDOEEndpoint {
    get { port }
    set { port = newValue }
  }
}

/// DOE discovery (PCIe 6.x §6.30.1.1) over any object exchange.
public enum DOEDiscovery {
  /// Walks the discovery table from index 0 until the next index is 0 (at most 256 entries: the
  /// index is a byte).
  public static func walk(
    _ exchange: (DOEDataObject) throws(SPDMRequesterError) -> DOEDataObject
  ) throws(SPDMRequesterError) -> [DOEProtocol] {
    var protocols: [DOEProtocol] = []
    var index: UInt8 = 0
    for _ in 0..<256 {
      let response = try exchange(DOEDiscoveryRequest(index: index).dataObject())
      let entry: DOEDiscoveryResponse
      do { entry = try DOEDiscoveryResponse(parsing: response) } catch {
        throw .transport("DOE discovery response malformed: \(error)")
      }
      protocols.append(entry.dataProtocol)
      if entry.isLast { return protocols }
      index = entry.nextIndex
    }
    throw .transport("DOE discovery did not terminate")
  }
}

/// Moves whole DOE objects to the endpoint without the register interface: the framing is the same
/// as on the mailbox path, only the DW-by-DW movement is skipped.
public struct WholeObjectDOETransport: SPDMRequesterTransport, DOEObjectExchange {
  public var endpoint: SPDMDOEEndpoint
  public private(set) var objects: [DOEDataObject] = []

  public init(endpoint: SPDMDOEEndpoint) {
    self.endpoint = endpoint
  }

  public mutating func exchange(object: DOEDataObject) throws(SPDMRequesterError) -> DOEDataObject {
    let request = object.paddedToDW()
    objects.append(request)
    guard let served = endpoint.serve(request) else { throw .transport("DOE: the device refused the object") }
    // As on the wire, the response payload arrives padded to a whole DW.
    let response = served.paddedToDW()
    objects.append(response)
    return response
  }

  public mutating func exchange(_ message: SPDMTransportMessage) throws(SPDMRequesterError)
    -> SPDMTransportMessage
  {
    try SPDMTransportMessage(doeResponse: try exchange(object: DOEDataObject(carrying: message)))
  }
}

extension DOEDataObject {
  /// The object that carries an SPDM message: type 1 for plain SPDM, type 2 for a DSP0277 record
  /// (PCIe 6.x §6.31.3, §6.31.4).
  public init(carrying message: SPDMTransportMessage) {
    switch message {
    case .plain(let bytes): self.init(protocol: .spdm, payload: bytes)
    case .secured(let bytes): self.init(protocol: .securedSPDM, payload: bytes)
    }
  }

  /// The object as the mailbox carries it: payload zero-padded to a whole DW (PCIe 6.x §6.30.1).
  public func paddedToDW() -> DOEDataObject {
    var padded = self
    padded.payload += [UInt8](repeating: 0, count: (4 - payload.count % 4) % 4)
    return padded
  }
}

extension SPDMTransportMessage {
  /// The SPDM message a DOE response object carries; another object type is a transport failure.
  public init(doeResponse object: DOEDataObject) throws(SPDMRequesterError) {
    switch DOEDataObjectType(rawValue: object.type) {
    case .spdm: self = .plain(object.payload)
    case .securedSPDM: self = .secured(object.payload)
    default: throw .transport("DOE response of unexpected type \(object.type)")
    }
  }
}

/// DWs as the little-endian bytes they carry on the wire (a free function: a generic type's static
/// method passed as a closure would capture its metatype).
private func doeLittleEndianBytes(_ dwords: [UInt32]) -> [UInt8] {
  dwords.flatMap { dword in (0..<4).map { UInt8(truncatingIfNeeded: dword >> (8 * $0)) } }
}
