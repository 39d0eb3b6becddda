public import CoveCrypto

/// What an emulated device's SPDM responder offers (DSP0274 §10.3 CAPABILITIES, §10.4 ALGORITHMS)
/// and the identity it proves: the slot-0 certificate chain, its private key, and its measurements.
public struct SPDMResponderConfiguration: Sendable {
  /// Versions listed in VERSION, lowest first.
  public var versions: [SPDMVersion] = [.v12, .v13]
  public var capabilities: ResponderCapabilities = [
    .cert, .chal, .measSig, .measFresh, .encrypt, .mac, .keyEx, .hbeat, .keyUpd,
  ]
  /// CT exponent: the responder answers cryptographic requests within 2^CTExponent µs.
  public var ctExponent: UInt8 = 14
  /// DSP0274 1.2: DataTransferSize ≥ MinDataTransferSize (42).
  public var dataTransferSize: UInt32 = 4096
  public var maxSPDMMessageSize: UInt32 = 4096
  public var baseAsymAlgorithms: BaseAsymAlgorithms = [.ecdsaP384, .ecdsaP256]
  public var baseHashAlgorithms: BaseHashAlgorithms = [.sha384, .sha256]
  public var dheGroups: DHEGroups = [.secp384r1, .secp256r1]
  public var aeadCipherSuites: AEADCipherSuites = [.aes256GCM]
  public var measurementHashAlgorithms: MeasurementHashAlgorithms = [.sha384, .sha256]
  /// Slot 0's chain, root first, as DER certificates; the leaf's key is `signingKey`.
  public var certificateChain: [X509Certificate]
  public var signingKey: ECPrivateKey
  /// Measurement blocks with raw values; indices must be unique and 1...0xFE.
  public var measurements: [MeasurementBlock]
  /// HEARTBEAT period in seconds reported in KEY_EXCHANGE_RSP (0: no heartbeat required).
  public var heartbeatPeriod: UInt8 = 0
  /// Concurrent sessions before SessionLimitExceeded.
  public var maxSessions: Int = 4

  public init(
    certificateChain: [X509Certificate], signingKey: ECPrivateKey, measurements: [MeasurementBlock]
  ) {
    self.certificateChain = certificateChain
    self.signingKey = signingKey
    self.measurements = measurements
  }
}

/// What a vendor-defined handler does with one request.
public enum SPDMVendorDefinedOutcome: Hashable, Sendable {
  /// Answer with this VENDOR_DEFINED_RESPONSE.
  case response(VendorDefinedResponse)
  /// Not a protocol the handler speaks: the responder answers ERROR UnsupportedRequest.
  case unsupported
  /// The request gets no answer at all (e.g. TDISP or IDE_KM outside a secured session, PCIe 6.x
  /// §11.3); over DOE the mailbox then reports ERROR.
  case noAnswer
}

/// Answers VENDOR_DEFINED_REQUEST messages (TDISP, IDE_KM) for the responder.
public protocol SPDMVendorDefinedHandler: AnyObject {
  func handle(_ request: VendorDefinedRequest, sessionID: UInt32?) -> SPDMVendorDefinedOutcome
  /// A session ended (END_SESSION, a record that failed authentication, or GET_VERSION resetting the
  /// connection). TDISP needs it: the session that programmed a TDI's IDE keys ending takes it to ERROR.
  func sessionEnded(_ sessionID: UInt32)
}

extension SPDMVendorDefinedHandler {
  public func sessionEnded(_ sessionID: UInt32) {}
}

/// One SPDM message as a transport carries it: plain (DOE type 1) or a DSP0277 record (DOE type 2).
public enum SPDMTransportMessage: Hashable, Sendable {
  case plain([UInt8])
  case secured([UInt8])

  public var bytes: [UInt8] {
    switch self {
    case .plain(let bytes), .secured(let bytes): bytes
    }
  }
}
