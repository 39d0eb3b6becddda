/// A TDISP request message type (PCIe 6.x §11.3.1, "TDISP Request Codes"): 0x81–0x8B in TDISP 1.0.
/// A struct, not an enum, so an unknown code survives decoding and can be answered UNSUPPORTED_REQUEST.
public struct TDISPRequestCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
  public var rawValue: UInt8
  public init(rawValue: UInt8) { self.rawValue = rawValue }

  public static let getTDISPVersion = TDISPRequestCode(rawValue: 0x81)
  public static let getTDISPCapabilities = TDISPRequestCode(rawValue: 0x82)
  public static let lockInterface = TDISPRequestCode(rawValue: 0x83)
  public static let getDeviceInterfaceReport = TDISPRequestCode(rawValue: 0x84)
  public static let getDeviceInterfaceState = TDISPRequestCode(rawValue: 0x85)
  public static let startInterface = TDISPRequestCode(rawValue: 0x86)
  public static let stopInterface = TDISPRequestCode(rawValue: 0x87)
  public static let bindP2PStream = TDISPRequestCode(rawValue: 0x88)
  public static let unbindP2PStream = TDISPRequestCode(rawValue: 0x89)
  public static let setMMIOAttribute = TDISPRequestCode(rawValue: 0x8A)
  public static let vdm = TDISPRequestCode(rawValue: 0x8B)

  /// Every request TDISP 1.0 defines, in code order.
  public static let allKnown: [TDISPRequestCode] = (0x81...0x8B).map { TDISPRequestCode(rawValue: $0) }

  /// The response code that answers this request: the request code with bit 7 cleared (§11.3.2).
  public var responseCode: TDISPResponseCode { TDISPResponseCode(rawValue: rawValue & 0x7F) }

  public var name: String? {
    switch rawValue {
    case 0x81: "GET_TDISP_VERSION"
    case 0x82: "GET_TDISP_CAPABILITIES"
    case 0x83: "LOCK_INTERFACE_REQUEST"
    case 0x84: "GET_DEVICE_INTERFACE_REPORT"
    case 0x85: "GET_DEVICE_INTERFACE_STATE"
    case 0x86: "START_INTERFACE_REQUEST"
    case 0x87: "STOP_INTERFACE_REQUEST"
    case 0x88: "BIND_P2P_STREAM_REQUEST"
    case 0x89: "UNBIND_P2P_STREAM_REQUEST"
    case 0x8A: "SET_MMIO_ATTRIBUTE_REQUEST"
    case 0x8B: "VDM_REQUEST"
    default: nil
    }
  }

  /// Looks a request up by its specification name (as the spec tables in specs/tdisp/ spell it).
  public init?(name: String) {
    guard let code = Self.allKnown.first(where: { $0.name == name }) else { return nil }
    self = code
  }

  public var description: String { name ?? "request 0x\(String(rawValue, radix: 16))" }
}

/// A TDISP response message type (PCIe 6.x §11.3.2, "TDISP Response Codes"): 0x01–0x0B answer the
/// request with the same low bits; 0x7F is TDISP_ERROR.
public struct TDISPResponseCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
  public var rawValue: UInt8
  public init(rawValue: UInt8) { self.rawValue = rawValue }

  public static let tdispVersion = TDISPResponseCode(rawValue: 0x01)
  public static let tdispCapabilities = TDISPResponseCode(rawValue: 0x02)
  public static let lockInterface = TDISPResponseCode(rawValue: 0x03)
  public static let deviceInterfaceReport = TDISPResponseCode(rawValue: 0x04)
  public static let deviceInterfaceState = TDISPResponseCode(rawValue: 0x05)
  public static let startInterface = TDISPResponseCode(rawValue: 0x06)
  public static let stopInterface = TDISPResponseCode(rawValue: 0x07)
  public static let bindP2PStream = TDISPResponseCode(rawValue: 0x08)
  public static let unbindP2PStream = TDISPResponseCode(rawValue: 0x09)
  public static let setMMIOAttribute = TDISPResponseCode(rawValue: 0x0A)
  public static let vdm = TDISPResponseCode(rawValue: 0x0B)
  public static let tdispError = TDISPResponseCode(rawValue: 0x7F)

  public var name: String? {
    switch rawValue {
    case 0x01: "TDISP_VERSION"
    case 0x02: "TDISP_CAPABILITIES"
    case 0x03: "LOCK_INTERFACE_RESPONSE"
    case 0x04: "DEVICE_INTERFACE_REPORT"
    case 0x05: "DEVICE_INTERFACE_STATE"
    case 0x06: "START_INTERFACE_RESPONSE"
    case 0x07: "STOP_INTERFACE_RESPONSE"
    case 0x08: "BIND_P2P_STREAM_RESPONSE"
    case 0x09: "UNBIND_P2P_STREAM_RESPONSE"
    case 0x0A: "SET_MMIO_ATTRIBUTE_RESPONSE"
    case 0x0B: "VDM_RESPONSE"
    case 0x7F: "TDISP_ERROR"
    default: nil
    }
  }

  public var description: String { name ?? "response 0x\(String(rawValue, radix: 16))" }
}

/// The ERROR_CODE of a TDISP_ERROR response (PCIe 6.x §11.3.24, Table 11-27 "Error Code and Error Data"). A u32 on
/// the wire; unknown values survive decoding.
public struct TDISPErrorCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
  public var rawValue: UInt32
  public init(rawValue: UInt32) { self.rawValue = rawValue }

  public static let invalidRequest = TDISPErrorCode(rawValue: 0x1)
  public static let busy = TDISPErrorCode(rawValue: 0x3)
  public static let invalidInterfaceState = TDISPErrorCode(rawValue: 0x4)
  public static let unspecified = TDISPErrorCode(rawValue: 0x5)
  public static let unsupportedRequest = TDISPErrorCode(rawValue: 0x7)
  public static let versionMismatch = TDISPErrorCode(rawValue: 0x41)
  public static let vendorSpecific = TDISPErrorCode(rawValue: 0xFF)
  public static let invalidInterface = TDISPErrorCode(rawValue: 0x101)
  public static let invalidNonce = TDISPErrorCode(rawValue: 0x102)
  public static let insufficientEntropy = TDISPErrorCode(rawValue: 0x103)
  public static let invalidDeviceConfiguration = TDISPErrorCode(rawValue: 0x104)

  static let named: [(TDISPErrorCode, String)] = [
    (.invalidRequest, "INVALID_REQUEST"), (.busy, "BUSY"),
    (.invalidInterfaceState, "INVALID_INTERFACE_STATE"),
    (.unspecified, "UNSPECIFIED"), (.unsupportedRequest, "UNSUPPORTED_REQUEST"),
    (.versionMismatch, "VERSION_MISMATCH"), (.vendorSpecific, "VENDOR_SPECIFIC_ERROR"),
    (.invalidInterface, "INVALID_INTERFACE"), (.invalidNonce, "INVALID_NONCE"),
    (.insufficientEntropy, "INSUFFICIENT_ENTROPY"),
    (.invalidDeviceConfiguration, "INVALID_DEVICE_CONFIGURATION"),
  ]

  public var name: String? { Self.named.first(where: { $0.0 == self })?.1 }

  public init?(name: String) {
    guard let entry = Self.named.first(where: { $0.1 == name }) else { return nil }
    self = entry.0
  }

  public var description: String { name ?? "error 0x\(String(rawValue, radix: 16))" }
}

/// The TDI states (PCIe 6.x §11.2, TDI states), with the encodings DEVICE_INTERFACE_STATE
/// carries (§11.3.13, Table 11-17 DEVICE_INTERFACE_STATE: 0 CONFIG_UNLOCKED, 1 CONFIG_LOCKED, 2 RUN, 3 ERROR).
public enum TDIState: UInt8, Hashable, Sendable, CaseIterable, CustomStringConvertible {
  case configUnlocked = 0
  case configLocked = 1
  case run = 2
  case error = 3

  public var name: String {
    switch self {
    case .configUnlocked: "CONFIG_UNLOCKED"
    case .configLocked: "CONFIG_LOCKED"
    case .run: "RUN"
    case .error: "ERROR"
    }
  }

  public init?(name: String) {
    guard let state = Self.allCases.first(where: { $0.name == name }) else { return nil }
    self = state
  }

  public var description: String { name }
}
