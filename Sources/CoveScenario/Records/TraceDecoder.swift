import CoveCrypto
import CoveWire
public import PCIe
public import SPDM

/// One message of a capture or trace, decoded: what `cove trace show` prints a line for, and what
/// tests compare (the structure, not the text).
public struct DecodedMessage: Hashable, Sendable {
  public enum Direction: String, Hashable, Sendable {
    /// TSM → DSM.
    case request
    /// DSM → TSM.
    case response
  }

  /// The innermost protocol the decoder reached.
  public struct ProtocolKind: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    /// DOE discovery (PCIe 6.x §6.30.1.1).
    public static let doeDiscovery = ProtocolKind(rawValue: "DOE discovery")
    /// An SPDM message (DSP0274), in the clear or decrypted from a session.
    public static let spdm = ProtocolKind(rawValue: "SPDM")
    /// A DSP0277 secured message that could not be opened (no keys, or they did not fit).
    public static let securedSPDM = ProtocolKind(rawValue: "secured SPDM")
    /// TDISP (PCIe 6.x §11), PCI-SIG protocol ID 0x01 in VENDOR_DEFINED.
    public static let tdisp = ProtocolKind(rawValue: "TDISP")
    /// IDE_KM (PCIe 6.x §6.33.3), PCI-SIG protocol ID 0x00 in VENDOR_DEFINED.
    public static let ideKM = ProtocolKind(rawValue: "IDE_KM")
    /// A VENDOR_DEFINED payload of another standards body, vendor or PCI-SIG protocol ID.
    public static let vendorDefined = ProtocolKind(rawValue: "vendor-defined")
    /// A DOE object of another vendor or type, or one that is not a well-formed DOE object.
    public static let doe = ProtocolKind(rawValue: "DOE")

    public var description: String { rawValue }
  }

  public struct Field: Hashable, Sendable, CustomStringConvertible {
    public var name: String
    public var value: String
    public init(_ name: String, _ value: String) {
      self.name = name
      self.value = value
    }
    public var description: String { "\(name)=\(value)" }
  }

  /// The record's position: its index in the capture, or its sequence number in a JSON trace.
  public var index: Int
  /// Virtual nanoseconds (whole microseconds from a pcap).
  public var time: UInt64
  public var direction: Direction
  /// The DOE object's vendor ID and type; nil for a clear-text record of a JSON trace.
  public var dataObject: DOEProtocol?
  /// The DSP0277 session the message travelled in, if any.
  public var sessionID: UInt32?
  /// True when the message is a secured record the decoder could not open.
  public var isEncrypted: Bool
  public var protocolKind: ProtocolKind
  /// The message's name in its specification (GET_VERSION, LOCK_INTERFACE_REQUEST, KEY_PROG, …).
  public var name: String
  /// Its key fields, in wire order, values as printed.
  public var fields: [Field]
  /// The innermost message's bytes: the DOE payload for discovery, the SPDM message (DOE padding
  /// trimmed), the TDISP or IDE_KM message without the PCI-SIG protocol ID, or the sealed record.
  public var bytes: [UInt8]
  /// For TDISP, IDE_KM and other vendor-defined payloads: the SPDM message that carried them.
  public var carrier: String?
  /// Why decoding stopped short (malformed, decryption failed, algorithms unknown), if it did.
  public var problem: String?

  public init(
    index: Int, time: UInt64, direction: Direction, dataObject: DOEProtocol? = nil, sessionID: UInt32? = nil,
    isEncrypted: Bool = false, protocolKind: ProtocolKind = .doe, name: String = "", fields: [Field] = [],
    bytes: [UInt8] = [], carrier: String? = nil, problem: String? = nil
  ) {
    self.index = index
    self.time = time
    self.direction = direction
    self.dataObject = dataObject
    self.sessionID = sessionID
    self.isEncrypted = isEncrypted
    self.protocolKind = protocolKind
    self.name = name
    self.fields = fields
    self.bytes = bytes
    self.carrier = carrier
    self.problem = problem
  }

  /// The value of the first field called `name`.
  public subscript(field name: String) -> String? { fields.first { $0.name == name }?.value }

  /// One line: index, time, direction, the DOE layer (and session), then the message and its fields,
  /// e.g. `#31 0.000016500 TSM→DSM PCI-SIG secured SPDM, session 0xfffefffe: VENDOR_DEFINED_REQUEST
  /// > TDISP LOCK_INTERFACE_REQUEST interface=03:00.1 …`.
  public var line: String {
    var text = "#\(index) \(TraceDecoder.seconds(time)) \(direction == .request ? "TSM→DSM" : "DSM→TSM") "
    if let dataObject { text += dataObject.description } else { text += "clear" }
    if let sessionID { text += ", session 0x" + TraceDecoder.hex(sessionID) }
    text += ": "
    if let carrier { text += "\(carrier) > " }
    if protocolKind != .spdm && protocolKind != .doeDiscovery && !isEncrypted { text += "\(protocolKind) " }
    text += name
    for field in fields { text += " \(field)" }
    if let problem { text += " [\(problem)]" }
    return text
  }
}

/// What a decode produced: the messages, and the lines to print (one per message, plus one per
/// non-message record of a JSON trace).
public struct TraceDecoding: Hashable, Sendable {
  public var messages: [DecodedMessage]
  public var lines: [String]

  public init(messages: [DecodedMessage] = [], lines: [String] = []) {
    self.messages = messages
    self.lines = lines
  }
}

/// Turns a run's DOE objects back into protocol messages: DOE discovery, SPDM (with Cove's codecs),
/// DSP0277 secured messages opened with the session secrets of a keys file, and inside them TDISP
/// and IDE_KM. Stateful, fed in capture order: the negotiated algorithms (from ALGORITHMS) size the
/// later SPDM messages' fields, each session's keys and sequence numbers advance as DSP0277 says.
///
/// - Direction: a pcap has none. A plain SPDM message says it (request codes have bit 7 set);
///   otherwise requests and responses alternate, as the mailbox enforces (PCIe 6.x §6.30.2).
/// - Sessions: the first secured record of a session ID takes the first unused secrets for that ID
///   from the keys file (IDs may repeat across reconnects, so a KEY_EXCHANGE_RSP starts afresh).
///   Records open with the handshake keys until FINISH_RSP, then with the data keys. A record the
///   current key does not open is tried with the direction's next key (KEY_UPDATE: Expand(secret,
///   "traffic upd")), and during the handshake with the data keys, so a KEY_UPDATE is followed
///   whichever side switches first; AES-GCM's tag rules out a wrong guess.
/// - Without keys, or when they do not fit, a secured record is reported encrypted, with its session.
public struct TraceDecoder {
  private let secrets: [SPDMSessionSecrets]
  private var usedSecrets: Set<Int> = []
  /// Sessions being followed, by ID (a KEY_EXCHANGE_RSP removes its ID's entry: a new session).
  var sessions: [UInt32: SessionState] = [:]
  /// For alternation when a record does not say its direction.
  private var expectsRequest = true
  var context = SPDMContext()

  public init(sessions: [SPDMSessionSecrets] = []) {
    secrets = sessions
  }

  /// What earlier SPDM messages settled that later ones need to be parsed.
  struct SPDMContext {
    var hashSize: Int?
    var signatureSize: Int?
    var requesterSignatureSize: Int?
    var exchangeDataSize: Int?
    /// MeasurementSummaryHashType of the last CHALLENGE or KEY_EXCHANGE.
    var summaryType = MeasurementSummaryHashType.none
    var measurementsSigned = false
    var requesterSessionID: UInt16?
  }

  struct SessionState {
    var secrets: SPDMSessionSecrets
    var established = false
    var requester: SPDMTrafficKeys
    var responder: SPDMTrafficKeys

    init(_ secrets: SPDMSessionSecrets) {
      self.secrets = secrets
      (requester, responder) = secrets.handshakeKeys
    }

    mutating func set(_ direction: DecodedMessage.Direction, _ keys: SPDMTrafficKeys) {
      if direction == .request { requester = keys } else { responder = keys }
    }
  }

  // MARK: Whole files

  /// Decodes a link-type-292 capture (a `--pcap` file) with the sessions of a keys file.
  public static func decode(pcap: [UInt8], sessions: [SPDMSessionSecrets] = []) throws(PcapError)
    -> TraceDecoding
  {
    let capture = try PcapReader.read(pcap)
    var decoder = TraceDecoder(sessions: sessions)
    var result = TraceDecoding()
    for (index, record) in capture.records.enumerated() {
      var message = decoder.decode(dataObject: record.bytes, index: index, time: record.time)
      if record.isTruncated {
        message.name = "truncated DOE object"
        message.problem = "captured \(record.bytes.count) of \(record.originalLength) bytes (snap length)"
      }
      result.messages.append(message)
      result.lines.append(message.line)
    }
    return result
  }

  // MARK: One object

  /// Decodes one DOE data object (header included). `isRequest` nil: inferred (see above).
  public mutating func decode(dataObject bytes: [UInt8], isRequest: Bool? = nil, index: Int, time: UInt64)
    -> DecodedMessage
  {
    var message = DecodedMessage(index: index, time: time, direction: .request)
    let object: DOEDataObject
    do { object = try DOEDataObject(parsing: bytes) } catch {
      message.direction = direction(isRequest, spdmCode: nil)
      message.name = "malformed DOE object"
      message.bytes = bytes
      message.problem = "\(error)"
      return message
    }
    message.dataObject = object.dataProtocol
    let isSPDM = object.dataProtocol == .spdm && object.payload.count >= 2
    message.direction = direction(isRequest, spdmCode: isSPDM ? object.payload[1] : nil)
    switch object.dataProtocol {
    case .discovery: describeDiscovery(object, into: &message)
    case .spdm: describeSPDM(object.payload, padded: true, into: &message)
    case .securedSPDM: describeSecured(object.payload, into: &message)
    default:
      message.name = "object"
      message.fields = [DecodedMessage.Field("length", "\(object.payload.count)")]
      message.bytes = object.payload
    }
    return message
  }

  private mutating func direction(_ isRequest: Bool?, spdmCode: UInt8?) -> DecodedMessage.Direction {
    let direction: DecodedMessage.Direction
    if let isRequest {
      direction = isRequest ? .request : .response
    } else if let spdmCode {
      direction = spdmCode & 0x80 != 0 ? .request : .response
    } else {
      direction = expectsRequest ? .request : .response
    }
    expectsRequest = direction == .response
    return direction
  }

  private func describeDiscovery(_ object: DOEDataObject, into message: inout DecodedMessage) {
    message.protocolKind = .doeDiscovery
    message.bytes = object.payload
    do throws(WireError) {
      if message.direction == .request {
        message.name = "DISCOVERY"
        let request = try DOEDiscoveryRequest(parsing: object)
        message.fields = [.init("index", "\(request.index)"), .init("version", "\(request.version)")]
      } else {
        message.name = "DISCOVERY_RESPONSE"
        let response = try DOEDiscoveryResponse(parsing: object)
        message.fields = [
          .init("protocol", "\"\(response.dataProtocol)\""), .init("next_index", "\(response.nextIndex)"),
        ]
      }
    } catch {
      message.problem = "\(error)"
    }
  }

  // MARK: Secured messages (DSP0277)

  private mutating func describeSecured(_ record: [UInt8], into message: inout DecodedMessage) {
    message.protocolKind = .securedSPDM
    message.bytes = record
    guard record.count >= SecuredMessage.headerSize else {
      message.name = "secured message"
      message.problem = "truncated: \(record.count) bytes, the header alone is \(SecuredMessage.headerSize)"
      return
    }
    let sessionID =
      UInt32(record[0]) | UInt32(record[1]) << 8 | UInt32(record[2]) << 16 | UInt32(record[3]) << 24
    message.sessionID = sessionID
    switch open(record, sessionID: sessionID, direction: message.direction) {
    case .noKeys:
      message.isEncrypted = true
      message.name = "encrypted"
      message.fields = [.init("length", "\(UInt16(record[4]) | UInt16(record[5]) << 8)")]
    case .failed(let why):
      message.isEncrypted = true
      message.name = "encrypted"
      message.fields = [.init("length", "\(UInt16(record[4]) | UInt16(record[5]) << 8)")]
      message.problem = why
    case .opened(let inner):
      describeSPDM(inner, padded: false, into: &message)
      guard inner.count >= 2 else { return }
      switch SPDMResponseCode(rawValue: inner[1]) {
      case .finishRsp where message.direction == .response:
        if var state = sessions[sessionID], !state.established, let data = state.secrets.dataKeys {
          state.established = true
          (state.requester, state.responder) = data
          sessions[sessionID] = state
        }
      case .endSessionAck where message.direction == .response:
        sessions[sessionID] = nil
      default: break
      }
    }
  }

  private enum Opened {
    case noKeys
    case failed(String)
    case opened([UInt8])
  }

  /// Opens a record with the session's keys for its direction (see the type's notes for the
  /// fallbacks); only a record that opens moves the keys on.
  private mutating func open(_ record: [UInt8], sessionID: UInt32, direction: DecodedMessage.Direction)
    -> Opened
  {
    if sessions[sessionID] == nil {
      guard
        let index = secrets.indices.first(where: {
          !usedSecrets.contains($0) && secrets[$0].sessionID == sessionID
        })
      else { return .noKeys }
      usedSecrets.insert(index)
      sessions[sessionID] = SessionState(secrets[index])
    }
    var state = sessions[sessionID]!
    let current = direction == .request ? state.requester : state.responder
    var keys = current
    let firstError: SecuredMessageError
    do {
      let message = try SecuredMessage.open(record, keys: &keys, allowsPadding: true).message
      state.set(direction, keys)
      sessions[sessionID] = state
      return .opened(message)
    } catch {
      firstError = error
    }
    if case .malformed = firstError { return .failed("\(firstError)") }
    if !state.established, let data = state.secrets.dataKeys {
      var keys = direction == .request ? data.requester : data.responder
      if let message = try? SecuredMessage.open(record, keys: &keys, allowsPadding: true).message {
        state.established = true
        (state.requester, state.responder) = data
        state.set(direction, keys)
        sessions[sessionID] = state
        return .opened(message)
      }
    }
    let schedule = state.secrets.keySchedule
    var updated = schedule.trafficKeys(secret: schedule.updatedSecret(current.secret))
    if let message = try? SecuredMessage.open(record, keys: &updated, allowsPadding: true).message {
      state.set(direction, updated)
      sessions[sessionID] = state
      return .opened(message)
    }
    return .failed(
      "\(firstError) with the \(state.established ? "data" : "handshake") keys at sequence number "
        + "\(current.sequenceNumber)")
  }

  // MARK: Formatting

  static func hex<Value: FixedWidthInteger>(_ value: Value) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: max(0, Value.bitWidth / 4 - digits.count)) + digits
  }

  /// Nanoseconds as seconds with nine decimals.
  static func seconds(_ nanoseconds: UInt64) -> String {
    let fraction = String(nanoseconds % 1_000_000_000)
    return "\(nanoseconds / 1_000_000_000)." + String(repeating: "0", count: 9 - fraction.count) + fraction
  }
}
