public import CoveWire

/// A DOE Discovery request (PCIe 6.x §6.30.1.1): "which protocol is at `index`?".
///
/// Payload, one DW: index in bits 7:0, DOE Discovery Version in bits 15:8 (added in PCIe 6.1; 0 from
/// requesters that predate it, Linux sends 2 to a version-2 capability), reserved bits 31:16.
public struct DOEDiscoveryRequest: Hashable, Sendable {
  public var index: UInt8
  /// The DOE Discovery Version the requester speaks. Carried, not interpreted: versions 0 and 2 ask
  /// the same question and get the same response layout.
  public var version: UInt8

  /// Payload size: one DW (PCIe 6.x §6.30.1.1).
  public static let payloadBytes = 4

  public init(index: UInt8, version: UInt8 = 0) {
    self.index = index
    self.version = version
  }

  public func encode() -> [UInt8] { [index, version, 0, 0] }

  /// Parses the payload of a discovery data object. The payload is exactly one DW; more is rejected
  /// as trailing bytes (a DOE object is whole DWs, so there is no padding to tolerate here).
  public init(parsing payload: [UInt8]) throws(WireError) {
    var reader = ByteReader(payload, baseOffset: DOEDataObject.headerBytes)
    index = try reader.readU8("Index")
    version = try reader.readU8("DOE Discovery Version")
    try reader.skip(2, "Reserved")
    try reader.expectEnd("DOE Discovery request")
  }

  /// The request as a complete data object of type discovery.
  public func dataObject() -> DOEDataObject {
    DOEDataObject(protocol: .discovery, payload: encode())
  }

  /// Parses a discovery data object, checking that it is one.
  public init(parsing object: DOEDataObject) throws(WireError) {
    guard object.dataProtocol == .discovery else {
      throw WireError(.unexpectedMessage, at: 0, field: "Vendor ID / Data Object Type")
    }
    try self.init(parsing: object.payload)
  }
}

/// A DOE Discovery response (PCIe 6.x §6.30.1.1): the protocol at the requested index and the index
/// to ask for next.
///
/// Payload, one DW: vendor ID in bits 15:0, data object type in bits 23:16, next index in bits 31:24.
/// A next index of 0 marks the last entry (index 0 is always DOE Discovery itself, so 0 can never be
/// a real "next").
public struct DOEDiscoveryResponse: Hashable, Sendable {
  public var dataProtocol: DOEProtocol
  public var nextIndex: UInt8

  /// Payload size: one DW (PCIe 6.x §6.30.1.1).
  public static let payloadBytes = 4

  public init(protocol dataProtocol: DOEProtocol, nextIndex: UInt8) {
    self.dataProtocol = dataProtocol
    self.nextIndex = nextIndex
  }

  /// True when this is the last entry of the table.
  public var isLast: Bool { nextIndex == 0 }

  public func encode() -> [UInt8] {
    var writer = ByteWriter(capacity: Self.payloadBytes)
    writer.append(dataProtocol.vendorID)
    writer.append(dataProtocol.type)
    writer.append(nextIndex)
    return writer.bytes
  }

  /// Parses the payload of a discovery response object; exactly one DW.
  public init(parsing payload: [UInt8]) throws(WireError) {
    var reader = ByteReader(payload, baseOffset: DOEDataObject.headerBytes)
    let vendorID = try reader.readU16("Vendor ID")
    let type = try reader.readU8("Data Object Type")
    nextIndex = try reader.readU8("Next Index")
    try reader.expectEnd("DOE Discovery response")
    dataProtocol = DOEProtocol(vendorID: vendorID, type: type)
  }

  /// The response as a complete data object of type discovery.
  public func dataObject() -> DOEDataObject {
    DOEDataObject(protocol: .discovery, payload: encode())
  }

  /// Parses a discovery data object, checking that it is one.
  public init(parsing object: DOEDataObject) throws(WireError) {
    guard object.dataProtocol == .discovery else {
      throw WireError(.unexpectedMessage, at: 0, field: "Vendor ID / Data Object Type")
    }
    try self.init(parsing: object.payload)
  }
}

/// The list of protocols a DOE mailbox answers discovery with (PCIe 6.x §6.30.1.1).
///
/// PCIe 6.x §6.30.1.1 puts DOE Discovery itself at index 0, and indices count up by one from there;
/// QEMU (`hw/pci/pcie_doe.c`: "index 0 must be Discovery") and DMTF spdm-emu
/// (`pci_doe_rsp_discovery.c`: discovery, SPDM, secured SPDM) answer the same way, and the DMTF
/// requester walks indices 0, 1, 2. ``standard`` is that layout for a CMA/SPDM device. The list is
/// configurable so tests can reproduce devices that lay their table out differently.
public struct DOEDiscoveryTable: Hashable, Sendable {
  /// Entries in index order.
  public private(set) var protocols: [DOEProtocol]

  /// At most 256 entries: the index and next-index fields are one byte (PCIe 6.x §6.30.1.1).
  public static let maxEntries = 256

  /// Index 0 discovery, 1 CMA/SPDM, 2 secured CMA/SPDM (PCIe 6.x §6.30.1.1, §6.31.3, §6.31.4).
  public static let standard = DOEDiscoveryTable(protocols: [.discovery, .spdm, .securedSPDM])

  /// A table with the given entries in index order. An empty table or more than 256 entries is a
  /// programming error: every mailbox supports discovery, and indices are one byte.
  public init(protocols: [DOEProtocol]) {
    precondition(!protocols.isEmpty, "a DOE discovery table has at least the discovery entry")
    precondition(protocols.count <= Self.maxEntries, "DOE discovery index is one byte")
    self.protocols = protocols
  }

  /// Whether the mailbox accepts objects of this protocol.
  public func supports(_ dataProtocol: DOEProtocol) -> Bool { protocols.contains(dataProtocol) }

  /// The answer to a discovery request, or nil when the index is past the end of the table.
  ///
  /// PCIe 6.x §6.30.1.1 defines responses only for indices the table has (a requester follows
  /// Next Index and stops at 0); for any other index Cove gives no response, and the mailbox owner
  /// reports that with ``DOEMailbox/failRequest()`` (DOE Error: "a data object … for which the DOE
  /// instance is unable to provide a response").
  public func response(to request: DOEDiscoveryRequest) -> DOEDiscoveryResponse? {
    let index = Int(request.index)
    guard index < protocols.count else { return nil }
    let next = index + 1 < protocols.count ? UInt8(index + 1) : 0
    return DOEDiscoveryResponse(protocol: protocols[index], nextIndex: next)
  }

  /// Answers a whole discovery data object. Throws for a malformed request; returns nil for an
  /// index past the end of the table (see ``response(to:)``).
  public func respond(to object: DOEDataObject) throws(WireError) -> DOEDataObject? {
    let request = try DOEDiscoveryRequest(parsing: object)
    return response(to: request)?.dataObject()
  }
}
