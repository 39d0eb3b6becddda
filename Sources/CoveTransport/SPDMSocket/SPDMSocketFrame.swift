import PCIe

/// A command of the SPDM socket protocol (PROTOCOLS.md, "spdm-emu / QEMU SPDM socket protocol"; the
/// values are DMTF spdm-emu's `SOCKET_SPDM_COMMAND_*`). A struct, not an enum: a peer may send a
/// command Cove does not know, and the responder must still answer it (with ``unknown``).
public struct SPDMSocketCommand: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
  public var rawValue: UInt32
  public init(rawValue: UInt32) { self.rawValue = rawValue }

  /// One SPDM exchange: the payload is a transport message (request, then its response).
  public static let normal = SPDMSocketCommand(rawValue: 0x0001)
  /// OOB: the requester asks the responder to update a session's keys (payload: 4-byte session ID).
  public static let oobKeyUpdate = SPDMSocketCommand(rawValue: 0x8001)
  /// OOB: the requester asks for the responder's endpoint information.
  public static let oobEndpointInfo = SPDMSocketCommand(rawValue: 0x8002)
  /// The hello: "Client Hello!\0" answered by "Server Hello!\0" (not for transport NONE).
  public static let test = SPDMSocketCommand(rawValue: 0xDEAD)
  /// The connection ends and the responder carries on with the next connection (echoed).
  public static let `continue` = SPDMSocketCommand(rawValue: 0xFFFD)
  /// The connection ends and the responder stops (echoed).
  public static let shutdown = SPDMSocketCommand(rawValue: 0xFFFE)
  /// A responder's answer to a command it does not know, before it drops the connection.
  public static let unknown = SPDMSocketCommand(rawValue: 0xFFFF)

  public var description: String {
    switch self {
    case .normal: "NORMAL"
    case .oobKeyUpdate: "OOB_KEY_UPDATE"
    case .oobEndpointInfo: "OOB_ENDPOINT_INFO"
    case .test: "TEST"
    case .continue: "CONTINUE"
    case .shutdown: "SHUTDOWN"
    case .unknown: "UNKNOWN"
    default: "command 0x" + String(rawValue, radix: 16)
    }
  }
}

/// The transport a frame's payload is bound to (spdm-emu's `SOCKET_TRANSPORT_TYPE_*`).
public struct SPDMSocketTransportType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
  public var rawValue: UInt32
  public init(rawValue: UInt32) { self.rawValue = rawValue }

  /// The bare SPDM message (spdm-emu opens no session on NONE; Cove's convention: ``SPDMSocketBinding``).
  public static let none = SPDMSocketTransportType(rawValue: 0)
  /// DSP0275 SPDM over MCTP: the MCTP message-type byte, then the message.
  public static let mctp = SPDMSocketTransportType(rawValue: 1)
  /// PCIe DOE (PCIe 6.x §6.30.1): the whole data object, header included.
  public static let pciDOE = SPDMSocketTransportType(rawValue: 2)
  /// DSP0287 SPDM over TCP (Cove does not serve it).
  public static let tcp = SPDMSocketTransportType(rawValue: 3)

  public var description: String {
    switch self {
    case .none: "NONE"
    case .mctp: "MCTP"
    case .pciDOE: "PCI_DOE"
    case .tcp: "TCP"
    default: "transport 0x" + String(rawValue, radix: 16)
    }
  }
}

/// One frame of the SPDM socket protocol: `command u32 | transport type u32 | payload size u32`, all
/// three big-endian (the network order spdm-emu and QEMU's spdm-socket use), then the payload.
public struct SPDMSocketFrame: Hashable, Sendable, CustomStringConvertible {
  public static let headerSize = 12
  /// The TEST hello's payloads, NUL included (spdm-emu `m_send_receive_buffer` hello strings).
  public static let clientHello: [UInt8] = Array("Client Hello!".utf8) + [0]
  public static let serverHello: [UInt8] = Array("Server Hello!".utf8) + [0]

  public var command: SPDMSocketCommand
  public var transportType: SPDMSocketTransportType
  public var payload: [UInt8]

  public init(command: SPDMSocketCommand, transportType: SPDMSocketTransportType, payload: [UInt8] = []) {
    precondition(payload.count <= Int(UInt32.max), "a frame's payload size is a u32")
    self.command = command
    self.transportType = transportType
    self.payload = payload
  }

  /// Header and payload in one buffer: a frame goes out in one write (split writes meet Nagle and
  /// delayed ACK, ~40–90 ms per round trip).
  public func encode() -> [UInt8] {
    var bytes: [UInt8] = []
    bytes.reserveCapacity(Self.headerSize + payload.count)
    encode(into: &bytes)
    return bytes
  }

  public func encode(into bytes: inout [UInt8]) {
    Self.appendBigEndian(command.rawValue, to: &bytes)
    Self.appendBigEndian(transportType.rawValue, to: &bytes)
    Self.appendBigEndian(UInt32(payload.count), to: &bytes)
    bytes.append(contentsOf: payload)
  }

  static func appendBigEndian(_ value: UInt32, to bytes: inout [UInt8]) {
    bytes.append(UInt8(truncatingIfNeeded: value >> 24))
    bytes.append(UInt8(truncatingIfNeeded: value >> 16))
    bytes.append(UInt8(truncatingIfNeeded: value >> 8))
    bytes.append(UInt8(truncatingIfNeeded: value))
  }

  public var description: String { "\(command) \(transportType) (\(payload.count) bytes)" }
}

/// A peer that broke the SPDM socket protocol, or a connection that failed: typed so the CLI can say
/// what happened and tests can assert it.
public enum SPDMSocketError: Error, Hashable, Sendable, CustomStringConvertible {
  /// A frame header announced more payload than the receiver accepts: refused before allocating.
  case payloadTooLarge(size: UInt32, maximum: Int)
  /// A frame for another transport than the endpoint's.
  case wrongTransport(got: SPDMSocketTransportType, expected: SPDMSocketTransportType)
  /// A frame the protocol does not allow here (a command out of place, a hello that is not one).
  case unexpectedFrame(SPDMSocketFrame, expected: String)
  /// The responder answered with 0xFFFF: it did not know the command.
  case unknownCommandAnswered(SPDMSocketCommand)
  /// A payload that does not carry what its transport binding says (malformed DOE object, no MCTP
  /// message type, wrong DOE vendor or type).
  case malformedPayload(String)
  /// The connection closed in the middle of a frame or before the answer.
  case connectionClosed(pendingBytes: Int)
  /// Connecting, reading or writing failed (the system's error, as text).
  case io(String)
  /// No answer in time.
  case timeout(String)

  public var description: String {
    switch self {
    case .payloadTooLarge(let size, let maximum):
      "frame payload of \(size) bytes announced, over the \(maximum)-byte limit"
    case .wrongTransport(let got, let expected): "frame for transport \(got), the endpoint speaks \(expected)"
    case .unexpectedFrame(let frame, let expected): "unexpected frame \(frame), expected \(expected)"
    case .unknownCommandAnswered(let command): "the peer does not know command \(command) (answered 0xFFFF)"
    case .malformedPayload(let why): "malformed payload: \(why)"
    case .connectionClosed(let pending):
      pending == 0
        ? "the peer closed the connection" : "the peer closed the connection mid-frame (\(pending) bytes)"
    case .io(let why): "socket: \(why)"
    case .timeout(let why): "timed out: \(why)"
    }
  }
}

/// Reassembles frames from bytes that arrive in arbitrary pieces (a TCP stream), without NIO so it can
/// be fuzzed and tested alone. Bytes in with ``append(_:)``; whole frames out with ``next()`` (nil:
/// more bytes needed). The size field is checked against ``maximumPayloadSize`` as soon as the header
/// is complete: an absurd size (0xFFFFFFFF) is a typed error, never an allocation.
public struct SPDMSocketFrameParser: Sendable {
  /// Default payload cap: the largest DOE object (2^18 DWs, PCIe 6.x §6.30.1), which bounds every
  /// transport Cove serves (an SPDM message over MCTP or NONE stays far below it).
  public static let defaultMaximumPayloadSize = DOEDataObject.maxBytes

  public let maximumPayloadSize: Int
  private var buffer: [UInt8] = []
  /// Where the unread bytes of ``buffer`` start (compacted when a frame is taken).
  private var start = 0
  /// Set once a header was refused: the stream cannot be resynchronised, nothing more is parsed.
  public private(set) var failed: SPDMSocketError?

  public init(maximumPayloadSize: Int = SPDMSocketFrameParser.defaultMaximumPayloadSize) {
    precondition(maximumPayloadSize >= 0)
    self.maximumPayloadSize = maximumPayloadSize
  }

  /// Bytes received but not yet part of a returned frame.
  public var pendingBytes: Int { buffer.count - start }

  public mutating func append(_ bytes: some Sequence<UInt8>) {
    guard failed == nil else { return }
    buffer.append(contentsOf: bytes)
  }

  /// A frame's 12-byte header, read and checked: the one place the size cap is enforced (the NIO
  /// decoder uses it too).
  public struct Header: Hashable, Sendable {
    public var command: SPDMSocketCommand
    public var transportType: SPDMSocketTransportType
    public var payloadSize: Int
  }

  /// Reads the header at the start of `bytes` (at least ``SPDMSocketFrame/headerSize`` of them).
  public static func header(
    _ bytes: some Collection<UInt8>, maximumPayloadSize: Int
  ) throws(SPDMSocketError) -> Header {
    precondition(bytes.count >= SPDMSocketFrame.headerSize)
    var fields: [UInt32] = [0, 0, 0]
    var index = bytes.startIndex
    for field in 0..<3 {
      for _ in 0..<4 {
        fields[field] = fields[field] << 8 | UInt32(bytes[index])
        index = bytes.index(after: index)
      }
    }
    guard UInt64(fields[2]) <= UInt64(maximumPayloadSize) else {
      throw .payloadTooLarge(size: fields[2], maximum: maximumPayloadSize)
    }
    return Header(
      command: SPDMSocketCommand(rawValue: fields[0]),
      transportType: SPDMSocketTransportType(rawValue: fields[1]),
      payloadSize: Int(fields[2]))
  }

  /// The next whole frame, nil if more bytes are needed, or the error that makes the stream unusable
  /// (returned again on every later call).
  public mutating func next() throws(SPDMSocketError) -> SPDMSocketFrame? {
    if let failed { throw failed }
    guard pendingBytes >= SPDMSocketFrame.headerSize else { return nil }
    let header: Header
    do {
      header = try Self.header(
        buffer[start..<(start + SPDMSocketFrame.headerSize)], maximumPayloadSize: maximumPayloadSize)
    } catch {
      failed = error
      buffer = []
      start = 0
      throw error
    }
    let total = SPDMSocketFrame.headerSize + header.payloadSize
    guard pendingBytes >= total else { return nil }
    let payloadStart = start + SPDMSocketFrame.headerSize
    let frame = SPDMSocketFrame(
      command: header.command, transportType: header.transportType,
      payload: Array(buffer[payloadStart..<(payloadStart + header.payloadSize)]))
    start += total
    if start == buffer.count {
      buffer.removeAll(keepingCapacity: true)
      start = 0
    } else if start > 4096, start * 2 > buffer.count {
      buffer.removeFirst(start)
      start = 0
    }
    return frame
  }
}
