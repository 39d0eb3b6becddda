public import CoveWire

/// HEARTBEAT (DSP0274 "HEARTBEAT request message format" table): header only.
public struct HeartbeatRequest: Hashable, Sendable {
  public static let code = SPDMRequestCode.heartbeat
  public var version: SPDMVersion
  public init(version: SPDMVersion) { self.version = version }

  public init(parsing bytes: [UInt8]) throws(WireError) {
    var reader = ByteReader(bytes)
    version = try SPDMHeader.parse(&reader, expecting: Self.code.rawValue, "HEARTBEAT").version
    try reader.expectEnd("HEARTBEAT")
  }

  public func encode() -> [UInt8] { [version.rawValue, Self.code.rawValue, 0, 0] }
}

/// HEARTBEAT_ACK (DSP0274 "HEARTBEAT_ACK response message format" table): header only.
public struct HeartbeatAck: Hashable, Sendable {
  public static let code = SPDMResponseCode.heartbeatAck
  public var version: SPDMVersion
  public init(version: SPDMVersion) { self.version = version }

  public init(parsing bytes: [UInt8]) throws(WireError) {
    var reader = ByteReader(bytes)
    version = try SPDMHeader.parse(&reader, expecting: Self.code.rawValue, "HEARTBEAT_ACK").version
    try reader.expectEnd("HEARTBEAT_ACK")
  }

  public func encode() -> [UInt8] { [version.rawValue, Self.code.rawValue, 0, 0] }
}

/// KEY_UPDATE KeyOperation (DSP0274 "KEY_UPDATE operations" table).
public struct KeyUpdateOperation: RawRepresentable, Hashable, Sendable {
  public var rawValue: UInt8
  public init(rawValue: UInt8) { self.rawValue = rawValue }
  public static let updateKey = KeyUpdateOperation(rawValue: 1)
  public static let updateAllKeys = KeyUpdateOperation(rawValue: 2)
  public static let verifyNewKey = KeyUpdateOperation(rawValue: 3)
}

/// KEY_UPDATE (DSP0274 "KEY_UPDATE request message format" table): Param1 KeyOperation, Param2 Tag.
public struct KeyUpdateRequest: Hashable, Sendable {
  public static let code = SPDMRequestCode.keyUpdate
  public var version: SPDMVersion
  public var operation: KeyUpdateOperation
  public var tag: UInt8

  public init(version: SPDMVersion, operation: KeyUpdateOperation, tag: UInt8) {
    self.version = version
    self.operation = operation
    self.tag = tag
  }

  public init(parsing bytes: [UInt8]) throws(WireError) {
    var reader = ByteReader(bytes)
    let header = try SPDMHeader.parse(&reader, expecting: Self.code.rawValue, "KEY_UPDATE")
    version = header.version
    operation = KeyUpdateOperation(rawValue: header.param1)
    tag = header.param2
    try reader.expectEnd("KEY_UPDATE")
  }

  public func encode() -> [UInt8] { [version.rawValue, Self.code.rawValue, operation.rawValue, tag] }
}

/// KEY_UPDATE_ACK (DSP0274 "KEY_UPDATE_ACK response message format" table): Param1 KeyOperation and
/// Param2 Tag echo the request.
public struct KeyUpdateAck: Hashable, Sendable {
  public static let code = SPDMResponseCode.keyUpdateAck
  public var version: SPDMVersion
  public var operation: KeyUpdateOperation
  public var tag: UInt8

  public init(version: SPDMVersion, operation: KeyUpdateOperation, tag: UInt8) {
    self.version = version
    self.operation = operation
    self.tag = tag
  }

  public init(parsing bytes: [UInt8]) throws(WireError) {
    var reader = ByteReader(bytes)
    let header = try SPDMHeader.parse(&reader, expecting: Self.code.rawValue, "KEY_UPDATE_ACK")
    version = header.version
    operation = KeyUpdateOperation(rawValue: header.param1)
    tag = header.param2
    try reader.expectEnd("KEY_UPDATE_ACK")
  }

  public func encode() -> [UInt8] { [version.rawValue, Self.code.rawValue, operation.rawValue, tag] }
}

/// END_SESSION (DSP0274 "END_SESSION request message format" table): Param1 bit 0
/// NegotiatedStateClearingIndicator (set = the Responder may drop the negotiated state).
public struct EndSessionRequest: Hashable, Sendable {
  public static let code = SPDMRequestCode.endSession
  public var version: SPDMVersion
  /// Param1 bit 0 as sent (spdm-rs: PRESERVE_NEGOTIATED_STATE; libspdm:
  /// PRESERVE_NEGOTIATED_STATE_CLEAR). Careful: DSP0274 names this bit the "Negotiated State Clearing
  /// Indicator" — when it is set a Responder that cached the negotiated state (CACHE_CAP) clears it.
  /// See ``negotiatedStateClearingIndicator``.
  public var preserveNegotiatedState: Bool

  /// The same bit under its DSP0274 name.
  public var negotiatedStateClearingIndicator: Bool {
    get { preserveNegotiatedState }
    set { preserveNegotiatedState = newValue }
  }

  public init(version: SPDMVersion, preserveNegotiatedState: Bool = false) {
    self.version = version
    self.preserveNegotiatedState = preserveNegotiatedState
  }

  public init(parsing bytes: [UInt8]) throws(WireError) {
    var reader = ByteReader(bytes)
    let header = try SPDMHeader.parse(&reader, expecting: Self.code.rawValue, "END_SESSION")
    version = header.version
    preserveNegotiatedState = header.param1 & 0x01 != 0
    try reader.expectEnd("END_SESSION")
  }

  public func encode() -> [UInt8] {
    [version.rawValue, Self.code.rawValue, preserveNegotiatedState ? 1 : 0, 0]
  }
}

/// END_SESSION_ACK (DSP0274 "END_SESSION_ACK response message format" table): header only.
public struct EndSessionAck: Hashable, Sendable {
  public static let code = SPDMResponseCode.endSessionAck
  public var version: SPDMVersion
  public init(version: SPDMVersion) { self.version = version }

  public init(parsing bytes: [UInt8]) throws(WireError) {
    var reader = ByteReader(bytes)
    version = try SPDMHeader.parse(&reader, expecting: Self.code.rawValue, "END_SESSION_ACK").version
    try reader.expectEnd("END_SESSION_ACK")
  }

  public func encode() -> [UInt8] { [version.rawValue, Self.code.rawValue, 0, 0] }
}
