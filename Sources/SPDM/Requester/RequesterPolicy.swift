public import CoveCrypto

/// What the requester (the host TSM) accepts: versions, algorithms, the trust anchors its verifier
/// uses, and reference values for measurements. The requester offers exactly these in
/// NEGOTIATE_ALGORITHMS, so a responder that selects anything else is rejected (DSP0274 §10.4).
public struct SPDMRequesterPolicy: Sendable {
  public var versions: [SPDMVersion] = [.v12, .v13]
  /// What the requester advertises: only what it implements (it has no certificate of its own, so no
  /// CERT_CAP, CHAL_CAP or MUT_AUTH_CAP).
  public var capabilities: RequesterCapabilities = [.encrypt, .mac, .keyEx, .hbeat, .keyUpd]
  public var ctExponent: UInt8 = 0
  public var dataTransferSize: UInt32 = 4096
  public var maxSPDMMessageSize: UInt32 = 4096
  public var baseAsymAlgorithms: BaseAsymAlgorithms = [.ecdsaP384, .ecdsaP256]
  public var baseHashAlgorithms: BaseHashAlgorithms = [.sha384, .sha256]
  public var dheGroups: DHEGroups = [.secp384r1, .secp256r1]
  public var aeadCipherSuites: AEADCipherSuites = [.aes256GCM]
  /// Roots the device certificate chain must lead to.
  public var trustAnchors: [X509Certificate]
  /// Time at which certificates must be valid (Unix seconds); nil means now.
  public var validationTime: Int64?
  /// Bytes asked for per GET_CERTIFICATE (DSP0274 §10.6 allows any; small values exercise chunking).
  public var certificateChunkSize: UInt16 = 1024
  /// Expected raw measurement values by index; a retrieved block that differs is rejected.
  public var referenceMeasurements: [UInt8: [UInt8]] = [:]

  public init(trustAnchors: [X509Certificate]) {
    self.trustAnchors = trustAnchors
  }
}
