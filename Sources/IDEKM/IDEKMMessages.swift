public import CoveWire

// IDE_KM messages (PCIe 6.x §6.33.3). Each starts with its object ID byte; the PCI-SIG protocol ID
// (0x00) in front of it belongs to the vendor-defined carriage (`PCISIGProtocolMessage`). All
// multi-byte fields are little-endian. Reserved fields are written as zero and ignored on receipt.

func readObjectID(_ reader: inout ByteReader, _ expected: IDEKMObjectID) throws(WireError) {
  let offset = reader.offset
  let id = try reader.readU8("Object ID")
  guard id == expected.rawValue else {
    throw WireError(.unexpectedMessage, at: offset, field: "Object ID (expected \(expected))")
  }
}

/// QUERY (object 0x00, §6.33.3): asks for the IDE registers of one port of the device.
/// Layout: object ID | reserved u8 | port index u8 — 3 bytes.
public struct IDEKMQuery: Hashable, Sendable {
  public static let objectID = IDEKMObjectID.query
  public static let size = 3
  public var portIndex: UInt8

  public init(portIndex: UInt8) { self.portIndex = portIndex }

  public init(parsing bytes: [UInt8]) throws(WireError) {
    var reader = ByteReader(bytes)
    try readObjectID(&reader, Self.objectID)
    try reader.skip(1, "Reserved")
    portIndex = try reader.readU8("PortIndex")
    try reader.expectEnd("QUERY")
  }

  public func encode() -> [UInt8] { [Self.objectID.rawValue, 0, portIndex] }
}

/// The KP_ACK status (§6.33.3 Table "KP_ACK Status"). Unknown values survive decoding.
public struct IDEKMKeyProgramStatus: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
  public var rawValue: UInt8
  public init(rawValue: UInt8) { self.rawValue = rawValue }
  public static let success = IDEKMKeyProgramStatus(rawValue: 0)
  public static let incorrectLength = IDEKMKeyProgramStatus(rawValue: 1)
  public static let unsupportedPortIndex = IDEKMKeyProgramStatus(rawValue: 2)
  public static let unsupportedValue = IDEKMKeyProgramStatus(rawValue: 3)
  public static let unspecifiedFailure = IDEKMKeyProgramStatus(rawValue: 4)
  public var description: String {
    switch self {
    case .success: "success"
    case .incorrectLength: "incorrect length"
    case .unsupportedPortIndex: "unsupported port index"
    case .unsupportedValue: "unsupported value"
    case .unspecifiedFailure: "unspecified failure"
    default: "status 0x\(String(rawValue, radix: 16))"
    }
  }
}

/// The fields shared by KEY_PROG, KP_ACK, K_SET_GO, K_SET_STOP and K_GOSTOP_ACK after the object
/// ID: reserved u16 | stream ID u8 | reserved-or-status u8 | key sub-stream u8 | port index u8.
struct IDEKMKeyHeader {
  static let size = 6
  var streamID: UInt8
  var byte4: UInt8
  var subStream: IDEKeySubStream
  var portIndex: UInt8

  init(streamID: UInt8, byte4: UInt8, subStream: IDEKeySubStream, portIndex: UInt8) {
    self.streamID = streamID
    self.byte4 = byte4
    self.subStream = subStream
    self.portIndex = portIndex
  }

  init(_ reader: inout ByteReader, byte4Name: String) throws(WireError) {
    try reader.skip(2, "Reserved")
    streamID = try reader.readU8("Stream ID")
    byte4 = try reader.readU8(byte4Name)
    subStream = IDEKeySubStream(rawValue: try reader.readU8("Key Sub-stream"))
    portIndex = try reader.readU8("PortIndex")
  }

  func write(_ objectID: IDEKMObjectID, into writer: inout ByteWriter) {
    writer.append(objectID.rawValue)
    writer.append(UInt16(0))
    writer.append(streamID)
    writer.append(byte4)
    writer.append(subStream.rawValue)
    writer.append(portIndex)
  }
}

/// KEY_PROG (object 0x02, §6.33.3): programs one key slot. Layout: object ID | reserved u16 |
/// stream ID | reserved | key sub-stream | port index | key 8 DW | IFV 2 DW — 47 bytes.
/// `key` holds the 32 key bytes exactly as on the wire (see `IDEKey` for the AES byte order);
/// `initialFieldValue` the 8 IFV bytes as on the wire.
public struct IDEKMKeyProgram: Hashable, Sendable {
  public static let objectID = IDEKMObjectID.keyProgram
  public static let keyBytes = 32
  public static let ifvBytes = 8
  public static let size = 1 + IDEKMKeyHeader.size + keyBytes + ifvBytes

  public var streamID: UInt8
  public var subStream: IDEKeySubStream
  public var portIndex: UInt8
  public var key: IDEKey
  /// The IV invocation field (§6.33.3 "IFV"), 2 DW in wire order.
  public var initialFieldValue: [UInt8]

  public init(
    streamID: UInt8, subStream: IDEKeySubStream, portIndex: UInt8, key: IDEKey,
    initialFieldValue: [UInt8] = [0, 0, 0, 0, 1, 0, 0, 0]
  ) {
    precondition(initialFieldValue.count == Self.ifvBytes, "IFV is 2 DW")
    self.streamID = streamID
    self.subStream = subStream
    self.portIndex = portIndex
    self.key = key
    self.initialFieldValue = initialFieldValue
  }

  public init(parsing bytes: [UInt8]) throws(WireError) {
    var reader = ByteReader(bytes)
    try readObjectID(&reader, Self.objectID)
    let header = try IDEKMKeyHeader(&reader, byte4Name: "Reserved")
    streamID = header.streamID
    subStream = header.subStream
    portIndex = header.portIndex
    key = IDEKey(wire: try reader.readBytes(Self.keyBytes, "Key"))
    initialFieldValue = try reader.readBytes(Self.ifvBytes, "IFV")
    try reader.expectEnd("KEY_PROG")
  }

  public func encode() -> [UInt8] {
    var writer = ByteWriter(capacity: Self.size)
    IDEKMKeyHeader(streamID: streamID, byte4: 0, subStream: subStream, portIndex: portIndex)
      .write(Self.objectID, into: &writer)
    writer.append(contentsOf: key.wire)
    writer.append(contentsOf: initialFieldValue)
    return writer.bytes
  }
}

/// KP_ACK (object 0x03, §6.33.3): the device's answer to KEY_PROG, echoing stream, sub-stream and
/// port. Layout: object ID | reserved u16 | stream ID | status | key sub-stream | port index — 7 bytes.
public struct IDEKMKeyProgramAck: Hashable, Sendable {
  public static let objectID = IDEKMObjectID.keyProgramAck
  public static let size = 1 + IDEKMKeyHeader.size

  public var streamID: UInt8
  public var status: IDEKMKeyProgramStatus
  public var subStream: IDEKeySubStream
  public var portIndex: UInt8

  public init(
    streamID: UInt8, status: IDEKMKeyProgramStatus, subStream: IDEKeySubStream, portIndex: UInt8
  ) {
    self.streamID = streamID
    self.status = status
    self.subStream = subStream
    self.portIndex = portIndex
  }

  public init(parsing bytes: [UInt8]) throws(WireError) {
    var reader = ByteReader(bytes)
    try readObjectID(&reader, Self.objectID)
    let header = try IDEKMKeyHeader(&reader, byte4Name: "Status")
    streamID = header.streamID
    status = IDEKMKeyProgramStatus(rawValue: header.byte4)
    subStream = header.subStream
    portIndex = header.portIndex
    try reader.expectEnd("KP_ACK")
  }

  public func encode() -> [UInt8] {
    var writer = ByteWriter(capacity: Self.size)
    IDEKMKeyHeader(streamID: streamID, byte4: status.rawValue, subStream: subStream, portIndex: portIndex)
      .write(Self.objectID, into: &writer)
    return writer.bytes
  }
}

/// K_SET_GO (0x04), K_SET_STOP (0x05) and K_GOSTOP_ACK (0x06) share one layout (§6.33.3):
/// object ID | reserved u16 | stream ID | reserved | key sub-stream | port index — 7 bytes.
/// `objectID` says which of the three this is.
public struct IDEKMKeySetCommand: Hashable, Sendable {
  public static let size = 1 + IDEKMKeyHeader.size
  public static let objectIDs: Set<IDEKMObjectID> = [.keySetGo, .keySetStop, .keyGoStopAck]

  public var objectID: IDEKMObjectID
  public var streamID: UInt8
  public var subStream: IDEKeySubStream
  public var portIndex: UInt8

  public init(objectID: IDEKMObjectID, streamID: UInt8, subStream: IDEKeySubStream, portIndex: UInt8) {
    precondition(Self.objectIDs.contains(objectID), "not a K_SET_GO/K_SET_STOP/K_GOSTOP_ACK object")
    self.objectID = objectID
    self.streamID = streamID
    self.subStream = subStream
    self.portIndex = portIndex
  }

  public static func go(streamID: UInt8, subStream: IDEKeySubStream, portIndex: UInt8) -> Self {
    Self(objectID: .keySetGo, streamID: streamID, subStream: subStream, portIndex: portIndex)
  }

  public static func stop(streamID: UInt8, subStream: IDEKeySubStream, portIndex: UInt8) -> Self {
    Self(objectID: .keySetStop, streamID: streamID, subStream: subStream, portIndex: portIndex)
  }

  /// The K_GOSTOP_ACK answering this K_SET_GO or K_SET_STOP (§6.33.3: fields echoed).
  public var acknowledgement: Self {
    Self(objectID: .keyGoStopAck, streamID: streamID, subStream: subStream, portIndex: portIndex)
  }

  public init(parsing bytes: [UInt8]) throws(WireError) {
    var reader = ByteReader(bytes)
    let id = IDEKMObjectID(rawValue: try reader.readU8("Object ID"))
    guard Self.objectIDs.contains(id) else {
      throw WireError(
        .unexpectedMessage, at: 0, field: "Object ID (expected K_SET_GO/K_SET_STOP/K_GOSTOP_ACK)")
    }
    let header = try IDEKMKeyHeader(&reader, byte4Name: "Reserved")
    objectID = id
    streamID = header.streamID
    subStream = header.subStream
    portIndex = header.portIndex
    try reader.expectEnd("\(id)")
  }

  public func encode() -> [UInt8] {
    var writer = ByteWriter(capacity: Self.size)
    IDEKMKeyHeader(streamID: streamID, byte4: 0, subStream: subStream, portIndex: portIndex)
      .write(objectID, into: &writer)
    return writer.bytes
  }
}

/// Any IDE_KM message, decoded by its object ID (§6.33.3). An unknown object ID throws
/// `.unexpectedMessage` at offset 0; an empty message throws `.truncated`.
public enum IDEKMMessage: Hashable, Sendable {
  case query(IDEKMQuery)
  case queryResponse(IDEKMQueryResponse)
  case keyProgram(IDEKMKeyProgram)
  case keyProgramAck(IDEKMKeyProgramAck)
  case keySetGo(IDEKMKeySetCommand)
  case keySetStop(IDEKMKeySetCommand)
  case keyGoStopAck(IDEKMKeySetCommand)

  public init(parsing bytes: [UInt8]) throws(WireError) {
    guard let first = bytes.first else { throw WireError(.truncated, at: 0, field: "Object ID") }
    switch IDEKMObjectID(rawValue: first) {
    case .query: self = .query(try IDEKMQuery(parsing: bytes))
    case .queryResponse: self = .queryResponse(try IDEKMQueryResponse(parsing: bytes))
    case .keyProgram: self = .keyProgram(try IDEKMKeyProgram(parsing: bytes))
    case .keyProgramAck: self = .keyProgramAck(try IDEKMKeyProgramAck(parsing: bytes))
    case .keySetGo: self = .keySetGo(try IDEKMKeySetCommand(parsing: bytes))
    case .keySetStop: self = .keySetStop(try IDEKMKeySetCommand(parsing: bytes))
    case .keyGoStopAck: self = .keyGoStopAck(try IDEKMKeySetCommand(parsing: bytes))
    default: throw WireError(.unexpectedMessage, at: 0, field: "Object ID (unknown IDE_KM object)")
    }
  }

  public var objectID: IDEKMObjectID {
    switch self {
    case .query: .query
    case .queryResponse: .queryResponse
    case .keyProgram: .keyProgram
    case .keyProgramAck: .keyProgramAck
    case .keySetGo: .keySetGo
    case .keySetStop: .keySetStop
    case .keyGoStopAck: .keyGoStopAck
    }
  }

  public func encode() -> [UInt8] {
    switch self {
    case .query(let message): message.encode()
    case .queryResponse(let message): message.encode()
    case .keyProgram(let message): message.encode()
    case .keyProgramAck(let message): message.encode()
    case .keySetGo(let message), .keySetStop(let message), .keyGoStopAck(let message): message.encode()
    }
  }
}
