public import CoveWire
public import SPDM

/// TDISP rides in SPDM VENDOR_DEFINED messages as PCI-SIG protocol 0x01 (PCIe 6.x §11.2.2, "TDISP
/// Message Transport"): the TDISP message is the payload after the protocol ID byte.
extension TDISPRequest {
  /// Decodes the TDISP request a PCI-SIG protocol message carries; a message for another protocol
  /// (IDE_KM) throws `.unexpectedMessage`. Offsets are relative to the TDISP message.
  public init(_ message: PCISIGProtocolMessage) throws(WireError) {
    guard message.protocolID == .tdisp else {
      throw WireError(.unexpectedMessage, at: 0, field: "PCI-SIG protocol ID (not TDISP)")
    }
    try self.init(parsing: message.message)
  }

  /// This request as a PCI-SIG protocol message, ready for `request(version:)`.
  public var pciSIGMessage: PCISIGProtocolMessage {
    PCISIGProtocolMessage(protocolID: .tdisp, message: encode())
  }
}

extension TDISPResponse {
  /// Decodes the TDISP response a PCI-SIG protocol message carries.
  public init(_ message: PCISIGProtocolMessage) throws(WireError) {
    guard message.protocolID == .tdisp else {
      throw WireError(.unexpectedMessage, at: 0, field: "PCI-SIG protocol ID (not TDISP)")
    }
    try self.init(parsing: message.message)
  }

  /// This response as a PCI-SIG protocol message, ready for `response(version:)`.
  public var pciSIGMessage: PCISIGProtocolMessage {
    PCISIGProtocolMessage(protocolID: .tdisp, message: encode())
  }
}
