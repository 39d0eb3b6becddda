public import CoveWire

/// A TDISP response (PCIe 6.x §11.3): header plus a body chosen by the response code.
public struct TDISPResponse: Hashable, Sendable {
  public enum Body: Hashable, Sendable {
    /// TDISP_VERSION (0x01): VERSION_NUM_COUNT u8 then that many version bytes.
    case version([TDISPVersion])
    /// TDISP_CAPABILITIES (0x02).
    case capabilities(TDISPCapabilities)
    /// LOCK_INTERFACE_RESPONSE (0x03): the 32-byte START_INTERFACE_NONCE.
    case lockInterface(nonce: [UInt8])
    /// DEVICE_INTERFACE_REPORT (0x04).
    case deviceInterfaceReport(TDISPReportPortion)
    /// DEVICE_INTERFACE_STATE (0x05): TDI_STATE u8.
    case deviceInterfaceState(TDIState)
    case startInterface
    case stopInterface
    case bindP2PStream
    case unbindP2PStream
    case setMMIOAttribute
    /// VDM_RESPONSE (0x0B).
    case vdm(TDISPVendorDefinedMessage)
    /// TDISP_ERROR (0x7F).
    case error(TDISPErrorResponse)

    public var code: TDISPResponseCode {
      switch self {
      case .version: .tdispVersion
      case .capabilities: .tdispCapabilities
      case .lockInterface: .lockInterface
      case .deviceInterfaceReport: .deviceInterfaceReport
      case .deviceInterfaceState: .deviceInterfaceState
      case .startInterface: .startInterface
      case .stopInterface: .stopInterface
      case .bindP2PStream: .bindP2PStream
      case .unbindP2PStream: .unbindP2PStream
      case .setMMIOAttribute: .setMMIOAttribute
      case .vdm: .vdm
      case .error: .tdispError
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

  public var code: TDISPResponseCode { body.code }

  /// The error, if this is a TDISP_ERROR.
  public var error: TDISPErrorResponse? {
    if case .error(let error) = body { return error }
    return nil
  }

  public init(parsing bytes: [UInt8]) throws(WireError) {
    guard bytes.count <= TDISPLimits.maximumMessageSize else {
      throw WireError(
        .lengthOutOfRange, at: 0, field: "TDISP message (exceeds a PCI-SIG VENDOR_DEFINED payload)")
    }
    var reader = ByteReader(bytes)
    let header = try TDISPMessageHeader.parse(&reader)
    let code = TDISPResponseCode(rawValue: header.messageType)
    switch code {
    case .tdispVersion:
      // VERSION_NUM_COUNT is a u8 and each entry one byte; the entries must all be present.
      let count = Int(try reader.readU8("VERSION_NUM_COUNT"))
      let versions = try reader.readBytes(count, "VERSION_NUM_ENTRY")
      body = .version(versions.map { TDISPVersion(rawValue: $0) })
    case .tdispCapabilities: body = .capabilities(try .parse(&reader))
    case .lockInterface:
      body = .lockInterface(nonce: try reader.readBytes(TDISPLimits.nonceSize, "START_INTERFACE_NONCE"))
    case .deviceInterfaceReport: body = .deviceInterfaceReport(try .parse(&reader))
    case .deviceInterfaceState:
      let offset = reader.offset
      let raw = try reader.readU8("TDI_STATE")
      guard let state = TDIState(rawValue: raw) else {
        throw WireError(.invalidValue, at: offset, field: "TDI_STATE (0–3 in TDISP 1.0)")
      }
      body = .deviceInterfaceState(state)
    case .startInterface: body = .startInterface
    case .stopInterface: body = .stopInterface
    case .bindP2PStream: body = .bindP2PStream
    case .unbindP2PStream: body = .unbindP2PStream
    case .setMMIOAttribute: body = .setMMIOAttribute
    case .vdm: body = .vdm(try .parse(&reader))
    case .tdispError: body = .error(try .parse(&reader))
    default:
      throw WireError(.unexpectedMessage, at: 1, field: "MessageType (not a TDISP 1.0 response)")
    }
    try reader.expectEnd(code.description)
    version = header.version
    interfaceID = header.interfaceID
  }

  public func encode() -> [UInt8] {
    var writer = ByteWriter(capacity: 64)
    TDISPMessageHeader(version: version, messageType: code.rawValue, interfaceID: interfaceID).encode(
      into: &writer)
    switch body {
    case .version(let versions):
      precondition(versions.count <= Int(UInt8.max), "VERSION_NUM_COUNT is a u8")
      writer.append(UInt8(versions.count))
      for version in versions { writer.append(version.rawValue) }
    case .capabilities(let caps): caps.encode(into: &writer)
    case .lockInterface(let nonce):
      precondition(nonce.count == TDISPLimits.nonceSize, "START_INTERFACE_NONCE is 32 bytes")
      writer.append(contentsOf: nonce)
    case .deviceInterfaceReport(let portion): portion.encode(into: &writer)
    case .deviceInterfaceState(let state): writer.append(state.rawValue)
    case .startInterface, .stopInterface, .bindP2PStream, .unbindP2PStream, .setMMIOAttribute: break
    case .vdm(let message): message.encode(into: &writer)
    case .error(let error): error.encode(into: &writer)
    }
    return writer.bytes
  }
}
