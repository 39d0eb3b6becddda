public import CoveWire

/// A TDISP request (PCIe 6.x §11.3): the header's version and INTERFACE_ID plus a body chosen by the
/// message type. Decoding is by code: `init(parsing:)` reads the header and then the body the code names.
public struct TDISPRequest: Hashable, Sendable {
  public enum Body: Hashable, Sendable {
    /// GET_TDISP_VERSION (0x81): no payload.
    case getVersion
    /// GET_TDISP_CAPABILITIES (0x82): TSM_CAPS u32.
    case getCapabilities(tsmCapabilities: UInt32)
    /// LOCK_INTERFACE_REQUEST (0x83): 20-byte parameters.
    case lockInterface(TDISPLockInterfaceParameters)
    /// GET_DEVICE_INTERFACE_REPORT (0x84): OFFSET u16, LENGTH u16.
    case getDeviceInterfaceReport(offset: UInt16, length: UInt16)
    /// GET_DEVICE_INTERFACE_STATE (0x85): no payload.
    case getDeviceInterfaceState
    /// START_INTERFACE_REQUEST (0x86): the 32-byte START_INTERFACE_NONCE.
    case startInterface(nonce: [UInt8])
    /// STOP_INTERFACE_REQUEST (0x87): no payload.
    case stopInterface
    /// BIND_P2P_STREAM_REQUEST (0x88): P2P_STREAM_ID u8.
    case bindP2PStream(streamID: UInt8)
    /// UNBIND_P2P_STREAM_REQUEST (0x89): P2P_STREAM_ID u8.
    case unbindP2PStream(streamID: UInt8)
    /// SET_MMIO_ATTRIBUTE_REQUEST (0x8A): one 16-byte MMIO_RANGE.
    case setMMIOAttribute(TDISPMMIORange)
    /// VDM_REQUEST (0x8B).
    case vdm(TDISPVendorDefinedMessage)
    /// A request code TDISP 1.0 does not define (≥ 0x80); its payload is kept uninterpreted so the
    /// responder can answer UNSUPPORTED_REQUEST.
    case unknown(TDISPRequestCode, payload: [UInt8])

    public var code: TDISPRequestCode {
      switch self {
      case .getVersion: .getTDISPVersion
      case .getCapabilities: .getTDISPCapabilities
      case .lockInterface: .lockInterface
      case .getDeviceInterfaceReport: .getDeviceInterfaceReport
      case .getDeviceInterfaceState: .getDeviceInterfaceState
      case .startInterface: .startInterface
      case .stopInterface: .stopInterface
      case .bindP2PStream: .bindP2PStream
      case .unbindP2PStream: .unbindP2PStream
      case .setMMIOAttribute: .setMMIOAttribute
      case .vdm: .vdm
      case .unknown(let code, _): code
      }
    }
  }

  public var version: TDISPVersion
  public var interfaceID: TDISPInterfaceID
  public var body: Body

  public init(version: TDISPVersion = .v10, interfaceID: TDISPInterfaceID, body: Body) {
    self.version = version
    self.interfaceID = interfaceID
    self.body = body
  }

  public var code: TDISPRequestCode { body.code }

  public init(parsing bytes: [UInt8]) throws(WireError) {
    guard bytes.count <= TDISPLimits.maximumMessageSize else {
      throw WireError(
        .lengthOutOfRange, at: 0, field: "TDISP message (exceeds a PCI-SIG VENDOR_DEFINED payload)")
    }
    var reader = ByteReader(bytes)
    let header = try TDISPMessageHeader.parse(&reader)
    guard header.messageType >= 0x80 else {
      throw WireError(.unexpectedMessage, at: 1, field: "MessageType (a response code in a request)")
    }
    let code = TDISPRequestCode(rawValue: header.messageType)
    let name = code.description
    switch code {
    case .getTDISPVersion: body = .getVersion
    case .getTDISPCapabilities: body = .getCapabilities(tsmCapabilities: try reader.readU32("TSM_CAPS"))
    case .lockInterface: body = .lockInterface(try .parse(&reader))
    case .getDeviceInterfaceReport:
      let offset = try reader.readU16("OFFSET")
      body = .getDeviceInterfaceReport(offset: offset, length: try reader.readU16("LENGTH"))
    case .getDeviceInterfaceState: body = .getDeviceInterfaceState
    case .startInterface:
      body = .startInterface(nonce: try reader.readBytes(TDISPLimits.nonceSize, "START_INTERFACE_NONCE"))
    case .stopInterface: body = .stopInterface
    case .bindP2PStream: body = .bindP2PStream(streamID: try reader.readU8("P2P_STREAM_ID"))
    case .unbindP2PStream: body = .unbindP2PStream(streamID: try reader.readU8("P2P_STREAM_ID"))
    case .setMMIOAttribute: body = .setMMIOAttribute(try .parse(&reader))
    case .vdm: body = .vdm(try .parse(&reader))
    default: body = .unknown(code, payload: reader.readRest())
    }
    try reader.expectEnd(name)
    version = header.version
    interfaceID = header.interfaceID
  }

  public func encode() -> [UInt8] {
    var writer = ByteWriter(capacity: 64)
    TDISPMessageHeader(version: version, messageType: code.rawValue, interfaceID: interfaceID).encode(
      into: &writer)
    switch body {
    case .getVersion, .getDeviceInterfaceState, .stopInterface: break
    case .getCapabilities(let caps): writer.append(caps)
    case .lockInterface(let parameters): parameters.encode(into: &writer)
    case .getDeviceInterfaceReport(let offset, let length):
      writer.append(offset)
      writer.append(length)
    case .startInterface(let nonce):
      precondition(nonce.count == TDISPLimits.nonceSize, "START_INTERFACE_NONCE is 32 bytes")
      writer.append(contentsOf: nonce)
    case .bindP2PStream(let id), .unbindP2PStream(let id): writer.append(id)
    case .setMMIOAttribute(let range): range.encode(into: &writer)
    case .vdm(let message): message.encode(into: &writer)
    case .unknown(_, let payload): writer.append(contentsOf: payload)
    }
    return writer.bytes
  }
}
