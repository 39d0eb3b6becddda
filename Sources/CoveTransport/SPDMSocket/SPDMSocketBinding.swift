public import PCIe
public import SPDM

/// How an SPDM message rides in a frame's payload, per transport (PROTOCOLS.md, "spdm-emu / QEMU SPDM
/// socket protocol"):
/// - `doe`: the whole DOE data object (PCIe 6.x §6.30.1), vendor 0x0001, type 1 SPDM or 2 secured
///   SPDM (§6.31.3, §6.31.4), type 0 for discovery; payload padded to a DW.
/// - `mctp`: the MCTP message-type byte (DSP0239: 0x05 SPDM, 0x06 secured SPDM), then the message;
///   secured records carry DSP0275's 2-byte sequence number.
/// - `none`: the bare message. spdm-emu opens no session on NONE, so nothing marks a DSP0277 record;
///   Cove's convention: a payload is a secured record when its first four bytes are the session ID
///   of a session the receiver holds (for the requester: the one its request used). A plain SPDM
///   message starts with its version byte (0x10–0x1F) and a request code, which a session ID could
///   only match by chance one in 2^32 times per open session.
public enum SPDMSocketBinding: String, Hashable, Sendable, CaseIterable, CustomStringConvertible {
  case doe
  case mctp
  case none

  public init?(transportType: SPDMSocketTransportType) {
    switch transportType {
    case .pciDOE: self = .doe
    case .mctp: self = .mctp
    case .none: self = .none
    default: return nil
    }
  }

  public var transportType: SPDMSocketTransportType {
    switch self {
    case .doe: .pciDOE
    case .mctp: .mctp
    case .none: .none
    }
  }

  /// Whether the connection opens with the TEST hello (spdm-emu skips it for NONE).
  public var usesHello: Bool { self != .none }

  /// How DSP0277 records are laid out on this transport: MCTP's (2-byte sequence number, the SPDM
  /// message type inside, DSP0275), or DOE's (PCIe 6.x §6.31.4), which NONE uses too.
  public var securedRecordFormat: SecuredRecordFormat { self == .mctp ? .mctp : .doe }

  public var description: String { rawValue }

  /// MCTP message types (DSP0239 Table 1).
  public enum MCTPMessageType {
    public static let spdm: UInt8 = 0x05
    public static let securedSPDM: UInt8 = 0x06
  }

  /// The payload that carries `message`.
  public func payload(for message: SPDMTransportMessage) -> [UInt8] {
    switch self {
    case .doe: DOEDataObject(carrying: message).paddedToDW().encode()
    case .mctp:
      switch message {
      case .plain(let bytes): [MCTPMessageType.spdm] + bytes
      case .secured(let bytes): [MCTPMessageType.securedSPDM] + bytes
      }
    case .none:
      switch message {
      case .plain(let bytes), .secured(let bytes): bytes
      }
    }
  }

  /// What a peer's payload carries (not for `.doe`, whose objects the caller parses as DOE:
  /// ``doeObject(_:)``). `sessions` are the session IDs the receiver holds (only NONE needs them).
  public func message(_ payload: [UInt8], sessions: Set<UInt32>) throws(SPDMSocketError)
    -> SPDMTransportMessage
  {
    switch self {
    case .doe:
      let object = try Self.doeObject(payload)
      switch DOEDataObjectType(rawValue: object.type) {
      case .spdm: return .plain(object.payload)
      case .securedSPDM: return .secured(object.payload)
      default: throw .malformedPayload("DOE object of type \(object.type) where SPDM was expected")
      }
    case .mctp:
      guard let type = payload.first else { throw .malformedPayload("empty MCTP payload") }
      switch type {
      case MCTPMessageType.spdm: return .plain(Array(payload.dropFirst()))
      case MCTPMessageType.securedSPDM: return .secured(Array(payload.dropFirst()))
      default: throw .malformedPayload("MCTP message type 0x\(String(type, radix: 16)) is not SPDM")
      }
    case .none:
      guard payload.count >= 4 else { return .plain(payload) }
      let id =
        UInt32(payload[0]) | UInt32(payload[1]) << 8 | UInt32(payload[2]) << 16 | UInt32(payload[3]) << 24
      return sessions.contains(id) ? .secured(payload) : .plain(payload)
    }
  }

  /// A PCI_DOE payload as a DOE data object: a PCI-SIG object whose length field matches the bytes.
  public static func doeObject(_ payload: [UInt8]) throws(SPDMSocketError) -> DOEDataObject {
    let object: DOEDataObject
    do { object = try DOEDataObject(parsing: payload) } catch {
      throw .malformedPayload("DOE object: \(error)")
    }
    guard object.vendorID == DOEProtocol.pciSIGVendorID else {
      throw .malformedPayload("DOE vendor 0x\(String(object.vendorID, radix: 16)), expected PCI-SIG 0x0001")
    }
    return object
  }
}
