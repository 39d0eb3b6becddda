public import CoveCrypto
import CoveWire

/// An SPDM requester (the host TSM's side of DSP0274 1.2/1.3) as a state machine that does no I/O.
///
/// Each operation is a pair: a `…Request` method returns the bytes to send and records what is
/// pending; the matching `handle…` method checks the response against it and against the policy.
/// The machine keeps the same transcripts as the responder (A, B, C, L1, the TH transcript), so
/// every signature and verify-data value is recomputed independently and a responder that deviates
/// by one byte is caught. ``SPDMRequesterDriver`` runs these pairs over a transport.
public struct SPDMRequester {
  public let policy: SPDMRequesterPolicy
  /// Set by DW-padded transports (DOE): see ``TransportPadding``.
  public var allowsTransportPadding = false
  public private(set) var version: SPDMVersion?
  public private(set) var responderVersions: [SPDMVersion] = []
  public private(set) var responderCapabilities: ResponderCapabilities = []
  public private(set) var responderDataTransferSize: UInt32 = 0
  public private(set) var algorithms: SPDMNegotiatedAlgorithms?
  public private(set) var digests: [[UInt8]] = []
  /// The verified slot-0 chain, root first, and the SPDM-format chain it came in.
  public private(set) var certificateChain: [X509Certificate] = []
  /// The trust anchor the certificate chain was verified to (the root of the validated path).
  public private(set) var trustAnchor: X509Certificate?
  public private(set) var spdmCertificateChain: SPDMCertificateChain?
  /// Summary hashes the responder committed to in CHALLENGE_AUTH / KEY_EXCHANGE_RSP.
  public private(set) var committedSummaryHash: (type: MeasurementSummaryHashType, hash: [UInt8])?
  public private(set) var sessions: [UInt32: SPDMSessionKeys] = [:]
  /// Whether to keep ``sessionSecrets``: off unless a capture is to be decrypted (`--keys`), so by
  /// default nothing of a session outlives END_SESSION.
  public var recordsSessionSecrets = false
  /// How the transport lays out secured records (DOE, MCTP): see ``SecuredRecordFormat``. Applies to sessions begun after it is set.
  public var securedRecordFormat = SecuredRecordFormat.doe
  /// With ``recordsSessionSecrets``, every session this requester began, in order, kept after the
  /// session ends and across GET_VERSION: added at KEY_EXCHANGE_RSP (handshake secrets), completed
  /// at FINISH_RSP (data secrets). What a capture decoder and spdm-dump need (``SPDMSessionSecrets``).
  public private(set) var sessionSecrets: [SPDMSessionSecrets] = []
  /// The last signed MEASUREMENTS that verified, kept so a relying party other than this requester
  /// (a confidential guest) can check the same signature itself.
  public private(set) var lastSignedMeasurements: SignedMeasurementsEvidence?

  private let entropy: any EntropySource
  private var pending: Pending?
  private var messageA: [UInt8] = []
  private var messageB: [UInt8] = []
  private var messageM: [UInt8] = []
  private var sessionMessageM: [UInt32: [UInt8]] = [:]
  private var certificateBuffer: [UInt8] = []
  /// Whether a CHALLENGE completed on this connection: until then, a request that skips it
  /// (measurements, key exchange, in-session requests) discards message B (DSP0274 "skipped
  /// CHALLENGE completion").
  private var challengeCompleted = false
  private var leafKey: ECPublicKey?

  private enum Pending {
    case version(request: [UInt8])
    case capabilities(request: [UInt8])
    case algorithms(request: [UInt8])
    case digests(request: [UInt8])
    case certificate(request: [UInt8], offset: Int, length: Int)
    case challenge(request: [UInt8], summaryType: MeasurementSummaryHashType)
    case measurements(request: [UInt8], message: GetMeasurementsRequest, sessionID: UInt32?)
    case keyExchange(
      request: [UInt8], ephemeral: ECPrivateKey, summaryType: MeasurementSummaryHashType,
      requesterSessionID: UInt16)
    case finish(sessionID: UInt32)
    case heartbeat(sessionID: UInt32)
    case keyUpdate(sessionID: UInt32, operation: KeyUpdateOperation, tag: UInt8)
    case endSession(sessionID: UInt32)
    case vendorDefined(sessionID: UInt32?)
  }

  public init(policy: SPDMRequesterPolicy, entropy: any EntropySource) {
    self.policy = policy
    self.entropy = entropy
  }

  // MARK: Response plumbing

  /// Parses the header, turns ERROR into a thrown error and checks code and version.
  private func check(_ response: [UInt8], expected: SPDMResponseCode) throws(SPDMRequesterError) {
    var reader = ByteReader(response)
    let header: SPDMHeader
    do { header = try SPDMHeader(parsing: &reader) } catch { throw .malformedResponse(error) }
    if header.code == SPDMResponseCode.error.rawValue {
      do {
        let error = try ErrorResponse(parsing: response)
        throw SPDMRequesterError.responderError(error.errorCode, data: error.errorData)
      } catch let error as SPDMRequesterError {
        throw error
      } catch {
        throw .malformedResponse(error as? WireError ?? WireError(.invalidValue, at: 0, field: "ERROR"))
      }
    }
    guard header.code == expected.rawValue else {
      throw .unexpectedResponse(expected: expected, got: header.code)
    }
    if expected != .version, let version, header.version != version {
      throw .versionMismatch(expected: version, got: header.version)
    }
  }

  private func decode<Message>(_ body: () throws(WireError) -> Message) throws(SPDMRequesterError) -> Message
  {
    do { return try body() } catch { throw .malformedResponse(error) }
  }

  /// Decodes a response, trimming DOE padding when the transport pads (``TransportPadding``).
  private func decode<Message>(
    _ response: inout [UInt8], _ body: ([UInt8]) throws(WireError) -> Message
  ) throws(SPDMRequesterError) -> Message {
    do {
      return try TransportPadding.decode(&response, allowsPadding: allowsTransportPadding, body)
    } catch {
      throw .malformedResponse(error)
    }
  }

  private mutating func take() throws(SPDMRequesterError) -> Pending {
    guard let pending else { throw .outOfOrder("response with no request pending") }
    self.pending = nil
    return pending
  }

  private func negotiated() throws(SPDMRequesterError) -> SPDMNegotiatedAlgorithms {
    guard let algorithms else { throw .outOfOrder("algorithms not negotiated") }
    return algorithms
  }

  // MARK: VCA (DSP0274 §10.2–§10.4)

  public mutating func getVersionRequest() -> [UInt8] {
    let request = GetVersionRequest().encode()
    version = nil
    algorithms = nil
    sessions = [:]
    committedSummaryHash = nil
    challengeCompleted = false
    digests = []
    certificateChain = []
    spdmCertificateChain = nil
    certificateBuffer = []
    leafKey = nil
    messageA = []
    messageB = []
    messageM = []
    pending = .version(request: request)
    return request
  }

  /// Chooses the highest version both sides speak.
  @discardableResult
  public mutating func handleVersion(_ response: [UInt8]) throws(SPDMRequesterError) -> SPDMVersion {
    var response = response
    guard case .version(let request) = try take() else { throw .outOfOrder("VERSION") }
    try check(response, expected: .version)
    let message = try decode(&response) { bytes throws(WireError) in try VersionResponse(parsing: bytes) }
    responderVersions = message.versions
    guard let chosen = policy.versions.filter(message.versions.contains).max() else {
      throw .noCommonVersion(offered: message.versions)
    }
    version = chosen
    messageA = request + response
    return chosen
  }

  public mutating func getCapabilitiesRequest() throws(SPDMRequesterError) -> [UInt8] {
    guard let version else { throw .outOfOrder("GET_CAPABILITIES before VERSION") }
    let request = GetCapabilitiesRequest(
      version: version, ctExponent: policy.ctExponent, flags: policy.capabilities,
      dataTransferSize: policy.dataTransferSize, maxSPDMMessageSize: policy.maxSPDMMessageSize
    ).encode()
    pending = .capabilities(request: request)
    return request
  }

  @discardableResult
  public mutating func handleCapabilities(_ response: [UInt8]) throws(SPDMRequesterError)
    -> ResponderCapabilities
  {
    var response = response
    guard case .capabilities(let request) = try take() else { throw .outOfOrder("CAPABILITIES") }
    try check(response, expected: .capabilities)
    let message = try decode(&response) { bytes throws(WireError) in try CapabilitiesResponse(parsing: bytes)
    }
    responderCapabilities = message.flags
    responderDataTransferSize = message.dataTransferSize
    messageA += request + response
    return message.flags
  }

  public mutating func negotiateAlgorithmsRequest() throws(SPDMRequesterError) -> [UInt8] {
    guard let version else { throw .outOfOrder("NEGOTIATE_ALGORITHMS before VERSION") }
    let request = NegotiateAlgorithmsRequest(
      version: version, measurementSpecification: .dmtf, otherParamsSupport: 0x02,
      baseAsymAlgorithms: policy.baseAsymAlgorithms, baseHashAlgorithms: policy.baseHashAlgorithms,
      dheGroups: policy.dheGroups, aeadCipherSuites: policy.aeadCipherSuites,
      requesterBaseAsymAlgorithms: [], keySchedules: .spdm,
      // Only tables with something in them: a responder rejects an AlgStruct whose AlgSupported is 0
      // (libspdm does, with InvalidRequest). Cove's requester has no key of its own, so no
      // ReqBaseAsymAlg table.
      algStructTypes: [
        policy.dheGroups.isEmpty ? nil : AlgStructType.dhe,
        policy.aeadCipherSuites.isEmpty ? nil : .aead,
        .keySchedule,
      ].compactMap { $0 }
    ).encode()
    pending = .algorithms(request: request)
    return request
  }

  /// Checks that every selection is a single algorithm the policy offered.
  @discardableResult
  public mutating func handleAlgorithms(_ response: [UInt8]) throws(SPDMRequesterError)
    -> SPDMNegotiatedAlgorithms
  {
    var response = response
    guard case .algorithms(let request) = try take(), let version else { throw .outOfOrder("ALGORITHMS") }
    try check(response, expected: .algorithms)
    let message = try decode(&response) { bytes throws(WireError) in try AlgorithmsResponse(parsing: bytes) }
    func single<Option: OptionSet>(_ selected: Option, _ offered: Option, _ name: String)
      throws(SPDMRequesterError)
    where Option.RawValue: FixedWidthInteger, Option.Element == Option {
      guard selected.rawValue.nonzeroBitCount == 1, offered.isSuperset(of: selected) else {
        throw .algorithmMismatch(
          selected.rawValue == 0
            ? "no common \(name)" : "\(name) 0x\(String(selected.rawValue, radix: 16)) was not offered")
      }
    }
    try single(message.baseHashSelection, policy.baseHashAlgorithms, "BaseHashAlgo")
    try single(message.baseAsymSelection, policy.baseAsymAlgorithms, "BaseAsymAlgo")
    if policy.capabilities.contains(.keyEx) && responderCapabilities.contains(.keyEx) {
      try single(message.dheGroup, policy.dheGroups, "DHE group")
      try single(message.aeadCipherSuite, policy.aeadCipherSuites, "AEAD cipher suite")
    }
    do {
      algorithms = try SPDMNegotiatedAlgorithms(
        version: version, baseHash: message.baseHashSelection, baseAsym: message.baseAsymSelection,
        dheGroup: message.dheGroup, aead: message.aeadCipherSuite,
        measurementHash: message.measurementHashAlgorithm,
        measurementSpecification: message.measurementSpecificationSelection)
    } catch {
      throw .algorithmMismatch(error.description)
    }
    messageA += request + response
    return algorithms!
  }

  // MARK: Certificates (DSP0274 §10.5, §10.6)

  public mutating func getDigestsRequest() throws(SPDMRequesterError) -> [UInt8] {
    let algorithms = try negotiated()
    guard responderCapabilities.contains(.cert) else { throw .missingCapability("CERT_CAP") }
    let request = GetDigestsRequest(version: algorithms.version).encode()
    messageM = []
    // GET_DIGESTS starts message B afresh (DSP0274 transcript rules; libspdm does the same).
    messageB = []
    pending = .digests(request: request)
    return request
  }

  @discardableResult
  public mutating func handleDigests(_ response: [UInt8]) throws(SPDMRequesterError) -> [[UInt8]] {
    var response = response
    guard case .digests(let request) = try take() else { throw .outOfOrder("DIGESTS") }
    let algorithms = try negotiated()
    try check(response, expected: .digests)
    let message = try decode(&response) { bytes throws(WireError) in
      try DigestsResponse(parsing: bytes, hashSize: algorithms.hashSize)
    }
    guard message.provisionedSlotMask & 0x01 != 0 else { throw .certificateFormat("slot 0 not provisioned") }
    digests = message.digests
    messageB += request + response
    return message.digests
  }

  /// The next GET_CERTIFICATE for slot 0, or nil once the whole chain has arrived.
  public mutating func nextCertificateRequest() throws(SPDMRequesterError) -> [UInt8]? {
    let algorithms = try negotiated()
    guard responderCapabilities.contains(.cert) else { throw .missingCapability("CERT_CAP") }
    if spdmCertificateChain != nil { return nil }
    let offset = certificateBuffer.count
    let request = GetCertificateRequest(
      version: algorithms.version, slotID: 0, offset: UInt16(offset), length: policy.certificateChunkSize
    ).encode()
    messageM = []
    pending = .certificate(request: request, offset: offset, length: Int(policy.certificateChunkSize))
    return request
  }

  /// Accepts one portion; when the remainder is zero, parses and verifies the chain.
  /// - Returns: true when the chain is complete and verified.
  @discardableResult
  public mutating func handleCertificate(_ response: [UInt8]) throws(SPDMRequesterError) -> Bool {
    var response = response
    guard case .certificate(let request, let offset, let length) = try take() else {
      throw .outOfOrder("CERTIFICATE")
    }
    let algorithms = try negotiated()
    try check(response, expected: .certificate)
    let message = try decode(&response) { bytes throws(WireError) in try CertificateResponse(parsing: bytes) }
    // DSP0274 §10.6: a portion may be shorter than asked, never longer, and the chain is at most
    // 65535 bytes (its Length field is a u16).
    guard message.portion.count <= length, !message.portion.isEmpty || message.remainderLength == 0,
      offset + message.portion.count + Int(message.remainderLength) <= Int(UInt16.max)
    else { throw .certificateFormat("portion of \(message.portion.count) bytes for a request of \(length)") }
    certificateBuffer += message.portion
    messageB += request + response
    if message.remainderLength > 0 { return false }
    let chain = try decode { () throws(WireError) in
      try SPDMCertificateChain(parsing: certificateBuffer, hashSize: algorithms.hashSize)
    }
    if let digest = digests.first, !ConstantTime.equals(digest, algorithms.hash.hash(certificateBuffer)) {
      throw .certificateDigestMismatch
    }
    let ders = try decode { () throws(WireError) in try chain.certificateDERs() }
    var certificates: [X509Certificate] = []
    for der in ders {
      do { certificates.append(try X509Certificate(der: der)) } catch {
        throw .certificateFormat("certificate \(certificates.count): \(error)")
      }
    }
    guard let root = certificates.first,
      ConstantTime.equals(chain.rootHash, algorithms.hash.hash(root.der))
    else { throw .certificateFormat("RootHash does not match the first certificate") }
    let verified: [X509Certificate]
    do {
      verified = try CertificateChainVerifier(trustAnchors: policy.trustAnchors)
        .verify(rootToLeaf: certificates, at: policy.validationTime)
    } catch {
      throw .certificateChain(error)
    }
    trustAnchor = verified.first
    do {
      let key = try certificates[certificates.count - 1].publicKey()
      guard key.curve == algorithms.signatureCurve else {
        throw SPDMRequesterError.algorithmMismatch("leaf key curve differs from BaseAsymSel")
      }
      leafKey = key
    } catch let error as SPDMRequesterError {
      throw error
    } catch {
      throw .crypto(error as? CryptoError ?? CryptoError(code: .invalidKey, operation: "leaf public key"))
    }
    certificateChain = certificates
    spdmCertificateChain = chain
    return true
  }

  // MARK: Challenge (DSP0274 §10.7)

  public mutating func challengeRequest(
    summaryType: MeasurementSummaryHashType = .all
  ) throws(SPDMRequesterError) -> [UInt8] {
    let algorithms = try negotiated()
    guard responderCapabilities.contains(.chal) else { throw .missingCapability("CHAL_CAP") }
    guard spdmCertificateChain != nil else { throw .outOfOrder("CHALLENGE before the certificate chain") }
    let request = ChallengeRequest(
      version: algorithms.version, slotID: 0, measurementSummaryHashType: summaryType,
      nonce: entropy.bytes(count: 32),
      requesterContext: algorithms.version >= .v13 ? entropy.bytes(count: 8) : []
    ).encode()
    messageM = []
    pending = .challenge(request: request, summaryType: summaryType)
    return request
  }

  public mutating func handleChallengeAuth(_ response: [UInt8]) throws(SPDMRequesterError) {
    var response = response
    guard case .challenge(let request, let summaryType) = try take() else {
      throw .outOfOrder("CHALLENGE_AUTH")
    }
    let algorithms = try negotiated()
    try check(response, expected: .challengeAuth)
    let message = try decode(&response) { bytes throws(WireError) in
      try ChallengeAuthResponse(
        parsing: bytes, hashSize: algorithms.hashSize, signatureSize: algorithms.signatureSize,
        measurementSummaryHashPresent: summaryType != .none)
    }
    guard let chain = spdmCertificateChain, let leafKey else { throw .outOfOrder("no certificate chain") }
    guard ConstantTime.equals(message.certChainHash, algorithms.hash.hash(chain.encode())) else {
      throw .certificateDigestMismatch
    }
    let unsigned = Array(response.dropLast(algorithms.signatureSize))
    let transcript = messageA + messageB + request + unsigned
    guard
      SPDMSigningContext.challengeAuth.verify(
        message.signature, key: leafKey, hash: algorithms.hash, version: algorithms.version,
        transcriptHash: algorithms.hash.hash(transcript))
    else { throw .signatureInvalid("CHALLENGE_AUTH") }
    messageB = []
    challengeCompleted = true
    if summaryType != .none { committedSummaryHash = (summaryType, message.measurementSummaryHash) }
  }

  /// Applies the transcript resets a request other than GET_MEASUREMENTS implies: the L1 of its
  /// scope, and message B while no CHALLENGE has completed.
  private mutating func resetTranscripts(sessionID: UInt32?, keepingL1: Bool = false) {
    if !keepingL1 {
      if let sessionID { sessionMessageM[sessionID] = [] } else { messageM = [] }
    }
    if !challengeCompleted { messageB = [] }
  }

  // MARK: Measurements (DSP0274 §10.9)

  /// - Parameter nonce: the 32-byte requester nonce for a signed request; a fresh random one when
  ///   nil. A relying party that is not the requester (a guest asking the TSM for evidence) passes its
  ///   own so the signature proves freshness to it (DSP0274 §10.11, Nonce).
  public mutating func getMeasurementsRequest(
    operation: UInt8 = 0xFF, signed: Bool = true, sessionID: UInt32? = nil, nonce: [UInt8]? = nil
  ) throws(SPDMRequesterError) -> [UInt8] {
    let algorithms = try negotiated()
    if let nonce, nonce.count != 32 {
      throw .outOfOrder("a GET_MEASUREMENTS nonce is 32 bytes, not \(nonce.count)")
    }
    guard !responderCapabilities.intersection([.measNoSig, .measSig]).isEmpty else {
      throw .missingCapability("MEAS_CAP")
    }
    if signed {
      guard responderCapabilities.contains(.measSig) else { throw .missingCapability("MEAS_CAP (signed)") }
      guard leafKey != nil else { throw .outOfOrder("signed GET_MEASUREMENTS before the certificate chain") }
    }
    let message = GetMeasurementsRequest(
      version: algorithms.version, signatureRequested: signed, rawBitStreamRequested: true,
      operation: operation, nonce: signed ? (nonce ?? entropy.bytes(count: 32)) : nil, slotID: 0,
      requesterContext: algorithms.version >= .v13 ? entropy.bytes(count: 8) : [])
    let request = message.encode()
    resetTranscripts(sessionID: sessionID, keepingL1: true)
    pending = .measurements(request: request, message: message, sessionID: sessionID)
    return request
  }

  /// Verifies the signature over L1 (when signed) and each block against its reference value.
  public mutating func handleMeasurements(_ response: [UInt8]) throws(SPDMRequesterError)
    -> MeasurementsResponse
  {
    var response = response
    guard case .measurements(let request, let message, let sessionID) = try take() else {
      throw .outOfOrder("MEASUREMENTS")
    }
    let algorithms = try negotiated()
    do {
      try check(response, expected: .measurements)
    } catch {
      // A failed GET_MEASUREMENTS ends the L1 sequence on both sides (libspdm resets message M).
      if let sessionID { sessionMessageM[sessionID] = [] } else { messageM = [] }
      throw error
    }
    let decoded = try decode(&response) { bytes throws(WireError) in
      try MeasurementsResponse(
        parsing: bytes, signatureSize: message.signatureRequested ? algorithms.signatureSize : nil)
    }
    var accumulated = sessionID.map { sessionMessageM[$0] ?? [] } ?? messageM
    if message.signatureRequested {
      accumulated += request + Array(response.dropLast(algorithms.signatureSize))
      guard let leafKey,
        SPDMSigningContext.measurements.verify(
          decoded.signature, key: leafKey, hash: algorithms.hash, version: algorithms.version,
          transcriptHash: algorithms.hash.hash(messageA + accumulated))
      else { throw .signatureInvalid("MEASUREMENTS") }
      lastSignedMeasurements = SignedMeasurementsEvidence(
        version: algorithms.version, hash: algorithms.hash, nonce: message.nonce ?? [],
        signedTranscript: messageA + accumulated, signature: decoded.signature)
      accumulated = []
    } else {
      accumulated += request + response
    }
    if let sessionID { sessionMessageM[sessionID] = accumulated } else { messageM = accumulated }
    for block in decoded.blocks {
      if let expected = policy.referenceMeasurements[block.index] {
        guard let value = block.dmtf?.value, ConstantTime.equals(value, expected) else {
          throw .measurementMismatch(index: block.index)
        }
      }
    }
    // The "all" summary the device committed to covers every block in digest form; the TCB subset
    // is the device's own choice, so only the "all" summary can be recomputed here.
    if message.operation == 0xFF, let committed = committedSummaryHash, committed.type == .all,
      let measurementHash = algorithms.measurementHash.coveHash
    {
      let recomputed = MeasurementSummary.hash(
        type: .all, digestBlocks: decoded.blocks.map { $0.digestForm(using: measurementHash) },
        algorithm: algorithms.hash)
      guard ConstantTime.equals(recomputed, committed.hash) else { throw .measurementSummaryMismatch }
    }
    return decoded
  }

  // MARK: Session establishment (DSP0274 §10.12–§10.14)

  public mutating func keyExchangeRequest(
    summaryType: MeasurementSummaryHashType = .all
  ) throws(SPDMRequesterError) -> [UInt8] {
    let algorithms = try negotiated()
    guard responderCapabilities.contains(.keyEx) else { throw .missingCapability("KEY_EX_CAP") }
    // Cove's sessions encrypt and authenticate; MAC-only sessions are not implemented.
    guard responderCapabilities.contains(.encrypt), responderCapabilities.contains(.mac) else {
      throw .missingCapability("ENCRYPT_CAP and MAC_CAP")
    }
    guard let dheCurve = algorithms.dheCurve else { throw .algorithmMismatch("no DHE group") }
    guard spdmCertificateChain != nil else { throw .outOfOrder("KEY_EXCHANGE before the certificate chain") }
    let ephemeral: ECPrivateKey
    do { ephemeral = try ECPrivateKey(curve: dheCurve, entropy: entropy) } catch { throw .crypto(error) }
    var requesterSessionID: UInt16 = 0
    repeat {
      let random = entropy.bytes(count: 2)
      requesterSessionID = UInt16(random[0]) | UInt16(random[1]) << 8
    } while requesterSessionID == 0 || requesterSessionID == 0xFFFF
    let request = KeyExchangeRequest(
      version: algorithms.version, measurementSummaryHashType: summaryType, slotID: 0,
      requesterSessionID: requesterSessionID, sessionPolicy: 0, randomData: entropy.bytes(count: 32),
      exchangeData: ephemeral.publicKey.rawXY,
      opaqueData: SecuredMessageOpaqueData.encode([.supportedVersions([0x1100, 0x1000])])
    ).encode()
    resetTranscripts(sessionID: nil)
    pending = .keyExchange(
      request: request, ephemeral: ephemeral, summaryType: summaryType, requesterSessionID: requesterSessionID
    )
    return request
  }

  /// Verifies the responder's signature and ResponderVerifyData and derives the handshake keys.
  /// - Returns: the new session's ID.
  public mutating func handleKeyExchangeResponse(_ response: [UInt8]) throws(SPDMRequesterError) -> UInt32 {
    var response = response
    guard case .keyExchange(let request, let ephemeral, let summaryType, let requesterSessionID) = try take()
    else { throw .outOfOrder("KEY_EXCHANGE_RSP") }
    let algorithms = try negotiated()
    try check(response, expected: .keyExchangeRsp)
    let message = try decode(&response) { bytes throws(WireError) in
      try KeyExchangeResponse(
        parsing: bytes, exchangeDataSize: algorithms.exchangeDataSize, hashSize: algorithms.hashSize,
        signatureSize: algorithms.signatureSize, measurementSummaryHashPresent: summaryType != .none,
        responderVerifyDataPresent: true)
    }
    guard let chain = spdmCertificateChain, let leafKey else { throw .outOfOrder("no certificate chain") }
    // Cove's requester has no identity of its own, so it never offers MUT_AUTH_CAP; a responder that
    // asks for mutual authentication anyway, or sets a heartbeat period without HBEAT_CAP on both
    // sides, violates DSP0274 KEY_EXCHANGE_RSP rules.
    guard message.mutAuthRequested & 0x07 == 0 else {
      throw .missingCapability("MUT_AUTH_CAP (the responder requested mutual authentication)")
    }
    if message.heartbeatPeriod != 0,
      !(policy.capabilities.contains(.hbeat) && responderCapabilities.contains(.hbeat))
    {
      throw .malformedResponse(WireError(.invalidValue, at: 2, field: "HeartbeatPeriod without HBEAT_CAP"))
    }
    if !message.opaqueData.isEmpty {
      let elements = try decode { () throws(WireError) in
        try SecuredMessageOpaqueData.parse(message.opaqueData)
      }
      let selected = elements.compactMap { element -> UInt16? in
        if case .selectedVersion(let version) = element { return version } else { return nil }
      }
      guard selected.count == 1, [UInt16(0x1100), 0x1000].contains(selected[0]) else {
        throw .algorithmMismatch("secured message version selection")
      }
    }
    let sharedSecret: [UInt8]
    do {
      let peer = try ECPublicKey(curve: ephemeral.curve, rawXY: message.exchangeData)
      sharedSecret = try ephemeral.sharedSecret(with: peer)
    } catch {
      throw .crypto(error)
    }
    let verifyDataSize = algorithms.hashSize
    let throughSignature = Array(response.dropLast(verifyDataSize))
    let beforeSignature = Array(throughSignature.dropLast(algorithms.signatureSize))
    var transcript = IncrementalHash(algorithms.hash)
    transcript.update(messageA)
    transcript.update(algorithms.hash.hash(chain.encode()))
    transcript.update(request)
    transcript.update(beforeSignature)
    guard
      SPDMSigningContext.keyExchangeResponse.verify(
        message.signature, key: leafKey, hash: algorithms.hash, version: algorithms.version,
        transcriptHash: transcript.finalize())
    else { throw .signatureInvalid("KEY_EXCHANGE_RSP") }
    transcript.update(message.signature)
    // DSP0277's session ID is ReqSessionID ‖ RspSessionID on the wire: little-endian, the
    // requester's half in the low 16 bits (libspdm_generate_session_id: rsp << 16 | req).
    let sessionID = UInt32(message.responderSessionID) << 16 | UInt32(requesterSessionID)
    var session = SPDMSessionKeys(
      sessionID: sessionID, algorithms: algorithms, sharedSecret: sharedSecret,
      transcriptThroughSignature: transcript)
    session.recordFormat = securedRecordFormat
    guard ConstantTime.equals(session.responderVerifyData, message.responderVerifyData) else {
      throw .verifyDataMismatch
    }
    session.appendTranscript(message.responderVerifyData)
    sessions[sessionID] = session
    if recordsSessionSecrets { sessionSecrets.append(SPDMSessionSecrets(session)) }
    if summaryType != .none { committedSummaryHash = (summaryType, message.measurementSummaryHash) }
    return sessionID
  }

  /// FINISH, sealed under the requester's handshake key.
  public mutating func finishRequest(sessionID: UInt32) throws(SPDMRequesterError) -> [UInt8] {
    guard var session = sessions[sessionID] else { throw .unknownSession(sessionID) }
    guard session.phase == .handshake else { throw .outOfOrder("FINISH on an established session") }
    let header = SPDMHeader(
      version: session.algorithms.version, code: SPDMRequestCode.finish.rawValue, param1: 0, param2: 0)
    var headerWriter = ByteWriter()
    header.encode(into: &headerWriter)
    var transcript = session.currentTranscript
    transcript.update(headerWriter.bytes)
    let request = FinishRequest(
      version: session.algorithms.version, signatureIncluded: false, requesterSlotID: 0, signature: [],
      requesterVerifyData: session.requesterVerifyData(transcriptIncludingFinishHeader: transcript)
    ).encode()
    session.appendTranscript(request)
    sessions[sessionID] = session
    pending = .finish(sessionID: sessionID)
    return try seal(request, sessionID: sessionID)
  }

  /// Opens FINISH_RSP under the responder's handshake key and switches the session to data keys.
  public mutating func handleFinishResponse(_ record: [UInt8]) throws(SPDMRequesterError) {
    guard case .finish(let sessionID) = try take() else { throw .outOfOrder("FINISH_RSP") }
    var response = try open(record, sessionID: sessionID)
    do {
      try check(response, expected: .finishRsp)
    } catch {
      sessions[sessionID] = nil
      throw error
    }
    _ = try decode(&response) { bytes throws(WireError) in
      try FinishResponse(parsing: bytes, verifyDataSize: nil)
    }
    sessions[sessionID]!.appendTranscript(response)
    sessions[sessionID]!.establish()
    if recordsSessionSecrets, let index = sessionSecrets.lastIndex(where: { $0.sessionID == sessionID }) {
      sessionSecrets[index] = SPDMSessionSecrets(sessions[sessionID]!)
    }
  }

  // MARK: In-session messages (DSP0274 §10.15–§10.18)

  public mutating func heartbeatRequest(sessionID: UInt32) throws(SPDMRequesterError) -> [UInt8] {
    let session = try established(sessionID)
    resetTranscripts(sessionID: sessionID)
    pending = .heartbeat(sessionID: sessionID)
    return try seal(HeartbeatRequest(version: session.algorithms.version).encode(), sessionID: sessionID)
  }

  public mutating func handleHeartbeatAck(_ record: [UInt8]) throws(SPDMRequesterError) {
    guard case .heartbeat(let sessionID) = try take() else { throw .outOfOrder("HEARTBEAT_ACK") }
    var response = try open(record, sessionID: sessionID)
    try check(response, expected: .heartbeatAck)
    _ = try decode(&response) { bytes throws(WireError) in try HeartbeatAck(parsing: bytes) }
  }

  public mutating func keyUpdateRequest(
    sessionID: UInt32, operation: KeyUpdateOperation
  ) throws(SPDMRequesterError) -> [UInt8] {
    let session = try established(sessionID)
    guard responderCapabilities.contains(.keyUpd) else { throw .missingCapability("KEY_UPD_CAP") }
    let tag = entropy.bytes(count: 1)[0]
    resetTranscripts(sessionID: sessionID)
    pending = .keyUpdate(sessionID: sessionID, operation: operation, tag: tag)
    return try seal(
      KeyUpdateRequest(version: session.algorithms.version, operation: operation, tag: tag).encode(),
      sessionID: sessionID)
  }

  /// Applies the key change the ACK confirms: the requester's key for UpdateKey, both for
  /// UpdateAllKeys (the ACK itself still came under the old responder key).
  public mutating func handleKeyUpdateAck(_ record: [UInt8]) throws(SPDMRequesterError) {
    guard case .keyUpdate(let sessionID, let operation, let tag) = try take() else {
      throw .outOfOrder("KEY_UPDATE_ACK")
    }
    // UpdateAllKeys: the responder switches its key before sending the ACK (libspdm does), so the
    // ACK is opened with the new responder key.
    if operation == .updateAllKeys { sessions[sessionID]?.updateResponderKeys() }
    var response = try open(record, sessionID: sessionID)
    try check(response, expected: .keyUpdateAck)
    let ack = try decode(&response) { bytes throws(WireError) in try KeyUpdateAck(parsing: bytes) }
    guard ack.operation == operation, ack.tag == tag else {
      throw .malformedResponse(WireError(.invalidValue, at: 2, field: "KEY_UPDATE_ACK operation/tag"))
    }
    // The requester's own key changes once the ACK confirms the responder has it.
    if operation == .updateKey || operation == .updateAllKeys { sessions[sessionID]!.updateRequesterKeys() }
  }

  public mutating func endSessionRequest(sessionID: UInt32) throws(SPDMRequesterError) -> [UInt8] {
    let session = try established(sessionID)
    resetTranscripts(sessionID: sessionID)
    pending = .endSession(sessionID: sessionID)
    return try seal(
      EndSessionRequest(version: session.algorithms.version, preserveNegotiatedState: false).encode(),
      sessionID: sessionID)
  }

  public mutating func handleEndSessionAck(_ record: [UInt8]) throws(SPDMRequesterError) {
    guard case .endSession(let sessionID) = try take() else { throw .outOfOrder("END_SESSION_ACK") }
    var response = try open(record, sessionID: sessionID)
    sessions[sessionID] = nil
    sessionMessageM[sessionID] = nil
    try check(response, expected: .endSessionAck)
    _ = try decode(&response) { bytes throws(WireError) in try EndSessionAck(parsing: bytes) }
  }

  /// A VENDOR_DEFINED_REQUEST (TDISP, IDE_KM, or an application message), in a session or not.
  public mutating func vendorDefinedRequest(
    standardID: UInt16, vendorID: [UInt8], payload: [UInt8], sessionID: UInt32?
  ) throws(SPDMRequesterError) -> SPDMTransportMessage {
    let version = try negotiated().version
    let request = VendorDefinedRequest(
      version: version, standardID: standardID, vendorID: vendorID, payload: payload
    )
    .encode()
    resetTranscripts(sessionID: sessionID)
    pending = .vendorDefined(sessionID: sessionID)
    guard let sessionID else { return .plain(request) }
    _ = try established(sessionID)
    return .secured(try seal(request, sessionID: sessionID))
  }

  public mutating func handleVendorDefinedResponse(
    _ message: SPDMTransportMessage
  ) throws(SPDMRequesterError) -> VendorDefinedResponse {
    guard case .vendorDefined(let sessionID) = try take() else {
      throw .outOfOrder("VENDOR_DEFINED_RESPONSE")
    }
    var response: [UInt8]
    switch (message, sessionID) {
    case (.secured(let record), let sessionID?): response = try open(record, sessionID: sessionID)
    case (.plain(let bytes), nil): response = bytes
    case (.plain(let bytes), _?):
      // A plain answer to a secured request is only legitimate as an ERROR (e.g. DecryptError).
      try check(bytes, expected: .vendorDefinedResponse)
      throw .outOfOrder("plain response to a secured request")
    case (.secured, nil): throw .outOfOrder("secured response to a plain request")
    }
    try check(response, expected: .vendorDefinedResponse)
    return try decode(&response) { bytes throws(WireError) in try VendorDefinedResponse(parsing: bytes) }
  }

  /// Opens a secured response to a pending in-session request; GET_MEASUREMENTS in a session uses it.
  public mutating func openSessionResponse(_ record: [UInt8], sessionID: UInt32) throws(SPDMRequesterError)
    -> [UInt8]
  {
    try open(record, sessionID: sessionID)
  }

  public mutating func sealSessionRequest(_ request: [UInt8], sessionID: UInt32) throws(SPDMRequesterError)
    -> [UInt8]
  {
    try seal(request, sessionID: sessionID)
  }

  // MARK: Record helpers

  private func established(_ sessionID: UInt32) throws(SPDMRequesterError) -> SPDMSessionKeys {
    guard let session = sessions[sessionID] else { throw .unknownSession(sessionID) }
    guard session.phase == .established else {
      throw .outOfOrder("session 0x\(String(sessionID, radix: 16)) not established")
    }
    return session
  }

  private mutating func seal(_ message: [UInt8], sessionID: UInt32) throws(SPDMRequesterError) -> [UInt8] {
    guard var session = sessions[sessionID] else { throw .unknownSession(sessionID) }
    do {
      let record = try session.sealFromRequester(message)
      sessions[sessionID] = session
      return record
    } catch {
      throw .secureMessage(error)
    }
  }

  private mutating func open(_ record: [UInt8], sessionID: UInt32) throws(SPDMRequesterError) -> [UInt8] {
    guard var session = sessions[sessionID] else { throw .unknownSession(sessionID) }
    do {
      let message = try session.openFromResponder(record, allowsPadding: allowsTransportPadding)
      sessions[sessionID] = session
      return message
    } catch {
      // A record that does not authenticate ends the session (DSP0277 §6).
      sessions[sessionID] = nil
      throw .secureMessage(error)
    }
  }
}
