import CoveWire

/// A request's RequestResponseCode (DSP0274 "SPDM request codes" table, 1.0 through 1.3). A struct, not
/// an enum, so a code this build does not know survives decoding and can be answered with
/// ERROR(UnsupportedRequest).
public struct SPDMRequestCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
  public var rawValue: UInt8
  public init(rawValue: UInt8) { self.rawValue = rawValue }

  /// GET_DIGESTS
  public static let getDigests = SPDMRequestCode(rawValue: 0x81)
  /// GET_CERTIFICATE
  public static let getCertificate = SPDMRequestCode(rawValue: 0x82)
  /// CHALLENGE
  public static let challenge = SPDMRequestCode(rawValue: 0x83)
  /// GET_VERSION
  public static let getVersion = SPDMRequestCode(rawValue: 0x84)
  /// CHUNK_SEND
  public static let chunkSend = SPDMRequestCode(rawValue: 0x85)
  /// CHUNK_GET
  public static let chunkGet = SPDMRequestCode(rawValue: 0x86)
  /// GET_ENDPOINT_INFO
  public static let getEndpointInfo = SPDMRequestCode(rawValue: 0x87)
  /// GET_MEASUREMENTS
  public static let getMeasurements = SPDMRequestCode(rawValue: 0xE0)
  /// GET_CAPABILITIES
  public static let getCapabilities = SPDMRequestCode(rawValue: 0xE1)
  /// GET_SUPPORTED_EVENT_TYPES
  public static let getSupportedEventTypes = SPDMRequestCode(rawValue: 0xE2)
  /// NEGOTIATE_ALGORITHMS
  public static let negotiateAlgorithms = SPDMRequestCode(rawValue: 0xE3)
  /// KEY_EXCHANGE
  public static let keyExchange = SPDMRequestCode(rawValue: 0xE4)
  /// FINISH
  public static let finish = SPDMRequestCode(rawValue: 0xE5)
  /// PSK_EXCHANGE
  public static let pskExchange = SPDMRequestCode(rawValue: 0xE6)
  /// PSK_FINISH
  public static let pskFinish = SPDMRequestCode(rawValue: 0xE7)
  /// HEARTBEAT
  public static let heartbeat = SPDMRequestCode(rawValue: 0xE8)
  /// KEY_UPDATE
  public static let keyUpdate = SPDMRequestCode(rawValue: 0xE9)
  /// GET_ENCAPSULATED_REQUEST
  public static let getEncapsulatedRequest = SPDMRequestCode(rawValue: 0xEA)
  /// DELIVER_ENCAPSULATED_RESPONSE
  public static let deliverEncapsulatedResponse = SPDMRequestCode(rawValue: 0xEB)
  /// END_SESSION
  public static let endSession = SPDMRequestCode(rawValue: 0xEC)
  /// GET_CSR
  public static let getCsr = SPDMRequestCode(rawValue: 0xED)
  /// SET_CERTIFICATE
  public static let setCertificate = SPDMRequestCode(rawValue: 0xEE)
  /// GET_MEASUREMENT_EXTENSION_LOG
  public static let getMeasurementExtensionLog = SPDMRequestCode(rawValue: 0xEF)
  /// SUBSCRIBE_EVENT_TYPES
  public static let subscribeEventTypes = SPDMRequestCode(rawValue: 0xF0)
  /// SEND_EVENT
  public static let sendEvent = SPDMRequestCode(rawValue: 0xF1)
  /// GET_KEY_PAIR_INFO
  public static let getKeyPairInfo = SPDMRequestCode(rawValue: 0xFC)
  /// SET_KEY_PAIR_INFO
  public static let setKeyPairInfo = SPDMRequestCode(rawValue: 0xFD)
  /// VENDOR_DEFINED_REQUEST
  public static let vendorDefinedRequest = SPDMRequestCode(rawValue: 0xFE)
  /// RESPOND_IF_READY
  public static let respondIfReady = SPDMRequestCode(rawValue: 0xFF)

  /// The specification's name, or the hex value for a code it does not define.
  public var name: String? {
    switch rawValue {
    case 0x81: "GET_DIGESTS"
    case 0x82: "GET_CERTIFICATE"
    case 0x83: "CHALLENGE"
    case 0x84: "GET_VERSION"
    case 0x85: "CHUNK_SEND"
    case 0x86: "CHUNK_GET"
    case 0x87: "GET_ENDPOINT_INFO"
    case 0xE0: "GET_MEASUREMENTS"
    case 0xE1: "GET_CAPABILITIES"
    case 0xE2: "GET_SUPPORTED_EVENT_TYPES"
    case 0xE3: "NEGOTIATE_ALGORITHMS"
    case 0xE4: "KEY_EXCHANGE"
    case 0xE5: "FINISH"
    case 0xE6: "PSK_EXCHANGE"
    case 0xE7: "PSK_FINISH"
    case 0xE8: "HEARTBEAT"
    case 0xE9: "KEY_UPDATE"
    case 0xEA: "GET_ENCAPSULATED_REQUEST"
    case 0xEB: "DELIVER_ENCAPSULATED_RESPONSE"
    case 0xEC: "END_SESSION"
    case 0xED: "GET_CSR"
    case 0xEE: "SET_CERTIFICATE"
    case 0xEF: "GET_MEASUREMENT_EXTENSION_LOG"
    case 0xF0: "SUBSCRIBE_EVENT_TYPES"
    case 0xF1: "SEND_EVENT"
    case 0xFC: "GET_KEY_PAIR_INFO"
    case 0xFD: "SET_KEY_PAIR_INFO"
    case 0xFE: "VENDOR_DEFINED_REQUEST"
    case 0xFF: "RESPOND_IF_READY"
    default: nil
    }
  }

  public var description: String { name ?? "request(0x\(Hex.encode([rawValue])))" }
}

/// A response's RequestResponseCode (DSP0274 "SPDM response codes" table, 1.0 through 1.3).
public struct SPDMResponseCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
  public var rawValue: UInt8
  public init(rawValue: UInt8) { self.rawValue = rawValue }

  /// DIGESTS
  public static let digests = SPDMResponseCode(rawValue: 0x01)
  /// CERTIFICATE
  public static let certificate = SPDMResponseCode(rawValue: 0x02)
  /// CHALLENGE_AUTH
  public static let challengeAuth = SPDMResponseCode(rawValue: 0x03)
  /// VERSION
  public static let version = SPDMResponseCode(rawValue: 0x04)
  /// CHUNK_SEND_ACK
  public static let chunkSendAck = SPDMResponseCode(rawValue: 0x05)
  /// CHUNK_RESPONSE
  public static let chunkResponse = SPDMResponseCode(rawValue: 0x06)
  /// ENDPOINT_INFO
  public static let endpointInfo = SPDMResponseCode(rawValue: 0x07)
  /// MEASUREMENTS
  public static let measurements = SPDMResponseCode(rawValue: 0x60)
  /// CAPABILITIES
  public static let capabilities = SPDMResponseCode(rawValue: 0x61)
  /// SUPPORTED_EVENT_TYPES
  public static let supportedEventTypes = SPDMResponseCode(rawValue: 0x62)
  /// ALGORITHMS
  public static let algorithms = SPDMResponseCode(rawValue: 0x63)
  /// KEY_EXCHANGE_RSP
  public static let keyExchangeRsp = SPDMResponseCode(rawValue: 0x64)
  /// FINISH_RSP
  public static let finishRsp = SPDMResponseCode(rawValue: 0x65)
  /// PSK_EXCHANGE_RSP
  public static let pskExchangeRsp = SPDMResponseCode(rawValue: 0x66)
  /// PSK_FINISH_RSP
  public static let pskFinishRsp = SPDMResponseCode(rawValue: 0x67)
  /// HEARTBEAT_ACK
  public static let heartbeatAck = SPDMResponseCode(rawValue: 0x68)
  /// KEY_UPDATE_ACK
  public static let keyUpdateAck = SPDMResponseCode(rawValue: 0x69)
  /// ENCAPSULATED_REQUEST
  public static let encapsulatedRequest = SPDMResponseCode(rawValue: 0x6A)
  /// ENCAPSULATED_RESPONSE_ACK
  public static let encapsulatedResponseAck = SPDMResponseCode(rawValue: 0x6B)
  /// END_SESSION_ACK
  public static let endSessionAck = SPDMResponseCode(rawValue: 0x6C)
  /// CSR
  public static let csr = SPDMResponseCode(rawValue: 0x6D)
  /// SET_CERTIFICATE_RSP
  public static let setCertificateRsp = SPDMResponseCode(rawValue: 0x6E)
  /// MEASUREMENT_EXTENSION_LOG
  public static let measurementExtensionLog = SPDMResponseCode(rawValue: 0x6F)
  /// SUBSCRIBE_EVENT_TYPES_ACK
  public static let subscribeEventTypesAck = SPDMResponseCode(rawValue: 0x70)
  /// EVENT_ACK
  public static let eventAck = SPDMResponseCode(rawValue: 0x71)
  /// KEY_PAIR_INFO
  public static let keyPairInfo = SPDMResponseCode(rawValue: 0x7C)
  /// SET_KEY_PAIR_INFO_ACK
  public static let setKeyPairInfoAck = SPDMResponseCode(rawValue: 0x7D)
  /// VENDOR_DEFINED_RESPONSE
  public static let vendorDefinedResponse = SPDMResponseCode(rawValue: 0x7E)
  /// ERROR
  public static let error = SPDMResponseCode(rawValue: 0x7F)

  /// The specification's name, or the hex value for a code it does not define.
  public var name: String? {
    switch rawValue {
    case 0x01: "DIGESTS"
    case 0x02: "CERTIFICATE"
    case 0x03: "CHALLENGE_AUTH"
    case 0x04: "VERSION"
    case 0x05: "CHUNK_SEND_ACK"
    case 0x06: "CHUNK_RESPONSE"
    case 0x07: "ENDPOINT_INFO"
    case 0x60: "MEASUREMENTS"
    case 0x61: "CAPABILITIES"
    case 0x62: "SUPPORTED_EVENT_TYPES"
    case 0x63: "ALGORITHMS"
    case 0x64: "KEY_EXCHANGE_RSP"
    case 0x65: "FINISH_RSP"
    case 0x66: "PSK_EXCHANGE_RSP"
    case 0x67: "PSK_FINISH_RSP"
    case 0x68: "HEARTBEAT_ACK"
    case 0x69: "KEY_UPDATE_ACK"
    case 0x6A: "ENCAPSULATED_REQUEST"
    case 0x6B: "ENCAPSULATED_RESPONSE_ACK"
    case 0x6C: "END_SESSION_ACK"
    case 0x6D: "CSR"
    case 0x6E: "SET_CERTIFICATE_RSP"
    case 0x6F: "MEASUREMENT_EXTENSION_LOG"
    case 0x70: "SUBSCRIBE_EVENT_TYPES_ACK"
    case 0x71: "EVENT_ACK"
    case 0x7C: "KEY_PAIR_INFO"
    case 0x7D: "SET_KEY_PAIR_INFO_ACK"
    case 0x7E: "VENDOR_DEFINED_RESPONSE"
    case 0x7F: "ERROR"
    default: nil
    }
  }

  public var description: String { name ?? "response(0x\(Hex.encode([rawValue])))" }
}

/// ERROR response Param1 (DSP0274 "Error code and error data" table, 1.0 through 1.3).
public struct SPDMErrorCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
  public var rawValue: UInt8
  public init(rawValue: UInt8) { self.rawValue = rawValue }

  /// InvalidRequest
  public static let invalidRequest = SPDMErrorCode(rawValue: 0x01)
  /// Busy
  public static let busy = SPDMErrorCode(rawValue: 0x03)
  /// UnexpectedRequest
  public static let unexpectedRequest = SPDMErrorCode(rawValue: 0x04)
  /// Unspecified
  public static let unspecified = SPDMErrorCode(rawValue: 0x05)
  /// DecryptError
  public static let decryptError = SPDMErrorCode(rawValue: 0x06)
  /// UnsupportedRequest
  public static let unsupportedRequest = SPDMErrorCode(rawValue: 0x07)
  /// RequestInFlight
  public static let requestInFlight = SPDMErrorCode(rawValue: 0x08)
  /// InvalidResponseCode
  public static let invalidResponseCode = SPDMErrorCode(rawValue: 0x09)
  /// SessionLimitExceeded
  public static let sessionLimitExceeded = SPDMErrorCode(rawValue: 0x0A)
  /// SessionRequired
  public static let sessionRequired = SPDMErrorCode(rawValue: 0x0B)
  /// ResetRequired
  public static let resetRequired = SPDMErrorCode(rawValue: 0x0C)
  /// ResponseTooLarge
  public static let responseTooLarge = SPDMErrorCode(rawValue: 0x0D)
  /// RequestTooLarge
  public static let requestTooLarge = SPDMErrorCode(rawValue: 0x0E)
  /// LargeResponse
  public static let largeResponse = SPDMErrorCode(rawValue: 0x0F)
  /// MessageLost
  public static let messageLost = SPDMErrorCode(rawValue: 0x10)
  /// InvalidPolicy
  public static let invalidPolicy = SPDMErrorCode(rawValue: 0x11)
  /// VersionMismatch
  public static let versionMismatch = SPDMErrorCode(rawValue: 0x41)
  /// ResponseNotReady
  public static let responseNotReady = SPDMErrorCode(rawValue: 0x42)
  /// RequestResynch
  public static let requestResynch = SPDMErrorCode(rawValue: 0x43)
  /// OperationFailed
  public static let operationFailed = SPDMErrorCode(rawValue: 0x44)
  /// NoPendingRequests
  public static let noPendingRequests = SPDMErrorCode(rawValue: 0x45)
  /// VendorDefined
  public static let vendorDefined = SPDMErrorCode(rawValue: 0xFF)

  /// The specification's name, or the hex value for a code it does not define.
  public var name: String? {
    switch rawValue {
    case 0x01: "InvalidRequest"
    case 0x03: "Busy"
    case 0x04: "UnexpectedRequest"
    case 0x05: "Unspecified"
    case 0x06: "DecryptError"
    case 0x07: "UnsupportedRequest"
    case 0x08: "RequestInFlight"
    case 0x09: "InvalidResponseCode"
    case 0x0A: "SessionLimitExceeded"
    case 0x0B: "SessionRequired"
    case 0x0C: "ResetRequired"
    case 0x0D: "ResponseTooLarge"
    case 0x0E: "RequestTooLarge"
    case 0x0F: "LargeResponse"
    case 0x10: "MessageLost"
    case 0x11: "InvalidPolicy"
    case 0x41: "VersionMismatch"
    case 0x42: "ResponseNotReady"
    case 0x43: "RequestResynch"
    case 0x44: "OperationFailed"
    case 0x45: "NoPendingRequests"
    case 0xFF: "VendorDefined"
    default: nil
    }
  }

  public var description: String { name ?? "error(0x\(Hex.encode([rawValue])))" }
}

/// Names for logs, e.g. `GET_VERSION`, `CHALLENGE_AUTH`.
public enum SPDMMessageCodeName {
  public static func name(request: SPDMRequestCode) -> String { request.description }
  public static func name(response: SPDMResponseCode) -> String { response.description }
  /// Requests have bit 7 set, responses clear (DSP0274: "response code = request code & 0x7F" for
  /// every request/response pair).
  public static func name(code: UInt8) -> String {
    code & 0x80 != 0
      ? name(request: SPDMRequestCode(rawValue: code)) : name(response: SPDMResponseCode(rawValue: code))
  }
}
