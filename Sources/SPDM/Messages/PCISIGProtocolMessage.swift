public import CoveWire

/// A PCI-SIG protocol message carried in SPDM VENDOR_DEFINED_REQUEST/RESPONSE (PCIe 6.x §6.31.3,
/// "VENDOR_DEFINED_REQUEST for PCI-SIG protocols"): StandardID 0x0003 (PCI-SIG), a 2-byte vendor ID of
/// 0x0001, and a payload whose first byte names the protocol (0x00 IDE_KM, 0x01 TDISP); the rest is
/// that protocol's message.
public struct PCISIGProtocolMessage: Hashable, Sendable {
  /// The protocol ID byte (PCIe 6.x Table "PCI-SIG protocol IDs").
  public struct ProtocolID: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let ideKM = ProtocolID(rawValue: 0x00)
    public static let tdisp = ProtocolID(rawValue: 0x01)
    public var description: String {
      switch self {
      case .ideKM: "IDE_KM"
      case .tdisp: "TDISP"
      default: "protocol 0x\(String(rawValue, radix: 16))"
      }
    }
  }

  /// PCI-SIG in DSP0274's registry of standards bodies.
  public static let standardID: UInt16 = 0x0003
  /// The PCI-SIG vendor ID, little-endian, as the VendorID field carries it.
  public static let vendorID: [UInt8] = [0x01, 0x00]

  public var protocolID: ProtocolID
  public var message: [UInt8]

  public init(protocolID: ProtocolID, message: [UInt8]) {
    self.protocolID = protocolID
    self.message = message
  }

  /// The VENDOR_DEFINED payload: protocol ID then the message.
  public var payload: [UInt8] { [protocolID.rawValue] + message }

  /// Recognises a PCI-SIG protocol message in a vendor-defined request; a message for another
  /// standards body or vendor throws `.unexpectedMessage` (the caller answers UnsupportedRequest).
  public init(standardID: UInt16, vendorID: [UInt8], payload: [UInt8]) throws(WireError) {
    guard standardID == Self.standardID else {
      throw WireError(.unexpectedMessage, at: 4, field: "StandardID (not PCI-SIG)")
    }
    guard vendorID == Self.vendorID else {
      throw WireError(.unexpectedMessage, at: 7, field: "VendorID (not PCI-SIG)")
    }
    guard let first = payload.first else {
      throw WireError(.truncated, at: 11, field: "PCI-SIG protocol ID")
    }
    protocolID = ProtocolID(rawValue: first)
    message = Array(payload.dropFirst())
  }

  public init(_ request: VendorDefinedRequest) throws(WireError) {
    try self.init(standardID: request.standardID, vendorID: request.vendorID, payload: request.payload)
  }

  public init(_ response: VendorDefinedResponse) throws(WireError) {
    try self.init(standardID: response.standardID, vendorID: response.vendorID, payload: response.payload)
  }

  public func request(version: SPDMVersion) -> VendorDefinedRequest {
    VendorDefinedRequest(
      version: version, standardID: Self.standardID, vendorID: Self.vendorID, payload: payload)
  }

  public func response(version: SPDMVersion) -> VendorDefinedResponse {
    VendorDefinedResponse(
      version: version, standardID: Self.standardID, vendorID: Self.vendorID, payload: payload)
  }
}
