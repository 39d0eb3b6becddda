public import CoveCrypto
import CoveWire

/// An SPDM responder (the device security manager's side of DSP0274 1.2/1.3) as a state machine that
/// does no I/O: the transport hands it each request and sends back what it returns.
///
/// It answers every request, well-formed or not, and survives them all: an out-of-order request
/// gets UnexpectedRequest, an unknown one UnsupportedRequest, a wrong version VersionMismatch, a
/// malformed one InvalidRequest, and a secured record that fails authentication DecryptError with
/// the session torn down (DSP0274 §10.11 "ERROR", DSP0277 §6).
public struct SPDMResponder {
  /// Where the connection is in VCA (DSP0274 §9.1 "Connection" ordering).
  public enum ConnectionState: Sendable, Hashable {
    case awaitingVersion
    case awaitingCapabilities
    case awaitingAlgorithms
    case negotiated
  }

  /// Mutable so a scenario can change the device under a live connection (e.g. a firmware update
  /// that changes measurements).
  public var configuration: SPDMResponderConfiguration
  public private(set) var state: ConnectionState = .awaitingVersion
  /// The version the requester chose in GET_CAPABILITIES.
  public private(set) var version: SPDMVersion?
  public private(set) var algorithms: SPDMNegotiatedAlgorithms?
  public private(set) var requesterCapabilities: RequesterCapabilities = []
  /// Sessions by session ID.
  public private(set) var sessions: [UInt32: SPDMSessionKeys] = [:]
  /// Errors this responder sent, most recent last (for traces and tests).
  /// The most recent errors this responder sent (at most ``errorHistoryLimit``), for traces and
  /// tests; `errorCount` counts them all.
  public private(set) var errorsSent: [SPDMErrorCode] = []
  public private(set) var errorCount = 0
  public static let errorHistoryLimit = 64
  /// Largest transcript (message B, or one L1) the responder keeps. DSP0274 sets no bound, but a
  /// requester that never finishes a CHALLENGE or never asks for a signature must not grow it without
  /// end; like libspdm's fixed buffers, overflowing it resets that transcript and answers
  /// Unspecified. 256 KiB holds the largest certificate chain (64 KiB) several times over.
  public static let transcriptLimit = 1 << 18
  public var vendorDefinedHandler: (any SPDMVendorDefinedHandler)?
  /// Set by DW-padded transports (DOE): see ``TransportPadding``.
  public var allowsTransportPadding = false
  /// How the transport lays out secured records (DOE, MCTP): see ``SecuredRecordFormat``. Applies to sessions begun after it is set.
  public var securedRecordFormat = SecuredRecordFormat.doe

  private let entropy: any EntropySource
  /// Message A: GET_VERSION … ALGORITHMS.
  private var messageA: [UInt8] = []
  /// Message B: GET_DIGESTS/DIGESTS and GET_CERTIFICATE/CERTIFICATE since the last CHALLENGE.
  private var messageB: [UInt8] = []
  /// L1 accumulators: outside any session, and per session (DSP0274 1.2 §10.9 "L1/L2").
  private var messageM: [UInt8] = []
  private var sessionMessageM: [UInt32: [UInt8]] = [:]
  /// The SPDM-format certificate chain of slot 0 under the negotiated hash.
  private var certificateChain: SPDMCertificateChain?

  public init(configuration: SPDMResponderConfiguration, entropy: any EntropySource) {
    self.configuration = configuration
    self.entropy = entropy
  }

  // MARK: Entry points

  /// Handles one request and returns the response to send, or nil when the request gets no answer.
  public mutating func respond(to message: SPDMTransportMessage) -> SPDMTransportMessage? {
    switch message {
    case .plain(let request):
      guard let response = handlePlain(request) else { return nil }
      return .plain(response)
    case .secured(let record):
      return handleSecured(record)
    }
  }

  private mutating func handlePlain(_ request: [UInt8]) -> [UInt8]? {
    do {
      return try dispatch(request, sessionID: nil)
    } catch let failure as ResponderFailure where failure.noAnswer {
      return nil
    } catch {
      return errorResponse(error)
    }
  }

  private mutating func handleSecured(_ record: [UInt8]) -> SPDMTransportMessage? {
    guard let sessionID = try? SecuredMessage.sessionID(of: record), var session = sessions[sessionID] else {
      // No session to decrypt with: no answer (libspdm drops it too); over DOE the mailbox reports
      // ERROR for a request that gets no response.
      unansweredRecords += 1
      return nil
    }
    let request: [UInt8]
    do {
      request = try session.openFromRequester(record, allowsPadding: allowsTransportPadding)
    } catch {
      // DSP0274 ERROR DecryptError, sealed under the session's current response key (the requester
      // can still open it, as libspdm's does), then the session is terminated.
      let error = errorResponse(ResponderFailure(.decryptError))
      let sealed = try? session.sealFromResponder(error)
      endSession(sessionID)
      return sealed.map { .secured($0) } ?? .plain(error)
    }
    sessions[sessionID] = session
    let response: [UInt8]
    var endAfterSending = false
    do {
      let outcome = try dispatchSecured(request, sessionID: sessionID)
      response = outcome.response
      endAfterSending = outcome.endSession
    } catch let failure as ResponderFailure where failure.code == .decryptError {
      // FINISH verify data mismatch: DecryptError inside the session, then teardown.
      response = errorResponse(failure)
      endAfterSending = true
    } catch {
      response = errorResponse(error)
    }
    guard var current = sessions[sessionID] else { return .plain(response) }
    let sealed: [UInt8]
    do {
      sealed = try current.sealFromResponder(response)
    } catch {
      endSession(sessionID)
      return .plain(errorResponse(ResponderFailure(.unspecified)))
    }
    sessions[sessionID] = current
    if pendingEstablish.remove(sessionID) != nil {
      sessions[sessionID]?.establish()
    }
    if endAfterSending { endSession(sessionID) }
    return .secured(sealed)
  }

  /// Sessions whose FINISH_RSP is being sealed with handshake keys; they switch to data keys after.
  private var pendingEstablish: Set<UInt32> = []
  /// KEY_UPDATE operations awaiting VerifyNewKey, per session (DSP0274 KEY_UPDATE: a new update may
  /// not start before the previous one was verified).
  private var pendingKeyUpdate: [UInt32: KeyUpdateOperation] = [:]
  /// Secured records for no known session, which get no answer.
  public private(set) var unansweredRecords = 0
  /// Whether a CHALLENGE completed on this connection; until then, requests that skip it discard
  /// message B (DSP0274 "skipped CHALLENGE completion"; libspdm resets B the same way).
  private var challengeCompleted = false
  /// The requester's DataTransferSize and MaxSPDMmsgSize from GET_CAPABILITIES.
  private var requesterDataTransferSize = UInt32.max
  private var requesterMaxMessageSize = UInt32.max

  private mutating func endSession(_ sessionID: UInt32) {
    if sessions[sessionID] != nil { vendorDefinedHandler?.sessionEnded(sessionID) }
    sessions[sessionID] = nil
    sessionMessageM[sessionID] = nil
    pendingEstablish.remove(sessionID)
    pendingKeyUpdate[sessionID] = nil
  }

  // MARK: Dispatch

  private struct SecuredOutcome {
    var response: [UInt8]
    var endSession = false
  }

  private mutating func dispatch(_ request: [UInt8], sessionID: UInt32?) throws -> [UInt8] {
    var reader = ByteReader(request)
    let header: SPDMHeader
    do { header = try SPDMHeader(parsing: &reader) } catch { throw ResponderFailure(.invalidRequest) }
    let code = SPDMRequestCode(rawValue: header.code)
    if code == .getVersion { return try handleGetVersion(request, header: header) }
    try checkVersion(header, code: code)
    if code != .getMeasurements { messageM = [] }
    resetMessageB(for: code)
    switch code {
    case .getCapabilities: return try handleGetCapabilities(request)
    case .negotiateAlgorithms: return try handleNegotiateAlgorithms(request)
    case .getDigests: return try handleGetDigests(request, sessionID: sessionID)
    case .getCertificate: return try handleGetCertificate(request, sessionID: sessionID)
    case .challenge: return try handleChallenge(request)
    case .getMeasurements:
      do { return try handleGetMeasurements(request, sessionID: nil) } catch {
        // A failed GET_MEASUREMENTS ends the L1 sequence (libspdm resets message M on every error).
        messageM = []
        throw error
      }
    case .keyExchange: return try handleKeyExchange(request)
    case .vendorDefinedRequest: return try handleVendorDefined(request, sessionID: nil)
    case .finish, .heartbeat, .keyUpdate, .endSession:
      // DSP0274 §10.14ff: these are meaningful only inside a session.
      guard state == .negotiated else { throw ResponderFailure(.unexpectedRequest) }
      throw ResponderFailure(.sessionRequired)
    default:
      throw ResponderFailure(.unsupportedRequest, data: header.code)
    }
  }

  private mutating func dispatchSecured(_ request: [UInt8], sessionID: UInt32) throws -> SecuredOutcome {
    var request = request
    var reader = ByteReader(request)
    let header: SPDMHeader
    do { header = try SPDMHeader(parsing: &reader) } catch { throw ResponderFailure(.invalidRequest) }
    let code = SPDMRequestCode(rawValue: header.code)
    // Connection-level requests are not allowed inside a session, whatever their version byte.
    if [.getVersion, .getCapabilities, .negotiateAlgorithms, .keyExchange, .challenge].contains(code) {
      throw ResponderFailure(.unexpectedRequest)
    }
    try checkVersion(header, code: code)
    guard let session = sessions[sessionID] else { throw ResponderFailure(.invalidRequest) }
    if session.phase == .handshake {
      // Only FINISH may travel under the handshake keys (DSP0274 §10.14).
      guard code == .finish else { throw ResponderFailure(.unexpectedRequest) }
      return SecuredOutcome(response: try handleFinish(request, sessionID: sessionID))
    }
    if code != .getMeasurements { sessionMessageM[sessionID] = [] }
    resetMessageB(for: code)
    switch code {
    case .heartbeat:
      _ = try parse(&request) { bytes throws(WireError) in try HeartbeatRequest(parsing: bytes) }
      return SecuredOutcome(response: HeartbeatAck(version: session.algorithms.version).encode())
    case .keyUpdate: return try handleKeyUpdate(request, sessionID: sessionID)
    case .endSession:
      _ = try parse(&request) { bytes throws(WireError) in try EndSessionRequest(parsing: bytes) }
      return SecuredOutcome(
        response: EndSessionAck(version: session.algorithms.version).encode(), endSession: true)
    case .vendorDefinedRequest:
      return SecuredOutcome(response: try handleVendorDefined(request, sessionID: sessionID))
    case .getMeasurements:
      do { return SecuredOutcome(response: try handleGetMeasurements(request, sessionID: sessionID)) } catch {
        sessionMessageM[sessionID] = []
        throw error
      }
    case .getDigests: return SecuredOutcome(response: try handleGetDigests(request, sessionID: sessionID))
    case .getCertificate:
      return SecuredOutcome(response: try handleGetCertificate(request, sessionID: sessionID))
    case .getVersion, .getCapabilities, .negotiateAlgorithms, .keyExchange, .finish, .challenge:
      // Connection-level requests are not allowed inside a session.
      throw ResponderFailure(.unexpectedRequest)
    default:
      throw ResponderFailure(.unsupportedRequest, data: header.code)
    }
  }

  /// GET_DIGESTS starts message B afresh; requests that skip CHALLENGE discard it while no CHALLENGE
  /// has completed (libspdm `libspdm_reset_message_buffer_via_request_code`).
  private mutating func resetMessageB(for code: SPDMRequestCode) {
    if code == .getDigests {
      messageB = []
    } else if !challengeCompleted,
      [.getMeasurements, .keyExchange, .finish, .keyUpdate, .heartbeat, .endSession].contains(code)
    {
      messageB = []
    }
  }

  /// Every request after VERSION must carry the version chosen in GET_CAPABILITIES.
  private func checkVersion(_ header: SPDMHeader, code: SPDMRequestCode) throws {
    if code == .getCapabilities, state == .awaitingCapabilities {
      guard configuration.versions.contains(header.version) else { throw ResponderFailure(.versionMismatch) }
      return
    }
    guard let version else {
      // Nothing negotiated yet: the only legal request is GET_VERSION.
      throw ResponderFailure(.unexpectedRequest)
    }
    guard header.version == version else { throw ResponderFailure(.versionMismatch) }
  }

  private func parse<Message>(_ body: () throws(WireError) -> Message) throws -> Message {
    do { return try body() } catch { throw ResponderFailure(.invalidRequest, wire: error) }
  }

  /// Decodes a request, trimming DOE padding when the transport pads (``TransportPadding``).
  private func parse<Message>(
    _ request: inout [UInt8], _ body: ([UInt8]) throws(WireError) -> Message
  ) throws -> Message {
    do {
      return try TransportPadding.decode(&request, allowsPadding: allowsTransportPadding, body)
    } catch {
      throw ResponderFailure(.invalidRequest, wire: error)
    }
  }

  // MARK: VCA

  private mutating func handleGetVersion(_ request: [UInt8], header: SPDMHeader) throws -> [UInt8] {
    var request = request
    // GET_VERSION is always version 1.0 (DSP0274 §10.2) and restarts the connection, ending sessions.
    // Errors to GET_VERSION are always sent as version 1.0 (libspdm: generate_invalid_version_error).
    guard header.version == .v10 else { throw ResponderFailure(.versionMismatch, version: .v10) }
    do {
      _ = try parse(&request) { bytes throws(WireError) in try GetVersionRequest(parsing: bytes) }
    } catch var failure as ResponderFailure {
      failure.version = .v10
      throw failure
    }
    state = .awaitingVersion
    version = nil
    algorithms = nil
    certificateChain = nil
    challengeCompleted = false
    requesterDataTransferSize = .max
    requesterMaxMessageSize = .max
    messageA = []
    messageB = []
    messageM = []
    for id in Array(sessions.keys) { endSession(id) }
    let response = VersionResponse(versions: configuration.versions).encode()
    messageA = request + response
    state = .awaitingCapabilities
    return response
  }

  private mutating func handleGetCapabilities(_ request: [UInt8]) throws -> [UInt8] {
    var request = request
    guard state == .awaitingCapabilities else { throw ResponderFailure(.unexpectedRequest) }
    let message = try parse(&request) { bytes throws(WireError) in try GetCapabilitiesRequest(parsing: bytes)
    }
    // DSP0274 1.2 §10.3: DataTransferSize must be at least MinDataTransferSize (42) and not above
    // MaxSPDMmsgSize.
    if message.version >= .v12 {
      guard message.dataTransferSize >= 42, message.dataTransferSize <= message.maxSPDMMessageSize else {
        throw ResponderFailure(.invalidRequest, version: message.version)
      }
      // Without CHUNK_CAP a message is never chunked, so the two sizes must agree (DSP0274 1.2 §10.3;
      // SPDM-Responder-Validator case 2.4 step 11).
      guard message.flags.contains(.chunk) || message.dataTransferSize == message.maxSPDMMessageSize else {
        throw ResponderFailure(.invalidRequest, version: message.version)
      }
    }
    // DSP0274 1.1+ §10.3 (Requester flag fields), as libspdm checks them: ENCRYPT/MAC and a key
    // exchange (KEY_EX or PSK) go together, PSK_CAP 10b/11b is reserved for a requester,
    // HANDSHAKE_IN_THE_CLEAR needs KEY_EX, CERT and PUB_KEY_ID exclude each other. Found by the DMTF
    // SPDM-Responder-Validator (case 2.4), which Cove answered with CAPABILITIES.
    // The ERROR carries the request's version (the one it asked for), as libspdm's does.
    if message.version >= .v11, !Self.requesterFlagsAreConsistent(message.flags) {
      throw ResponderFailure(.invalidRequest, version: message.version)
    }
    version = message.version
    requesterCapabilities = message.flags
    if message.version >= .v12 {
      requesterDataTransferSize = message.dataTransferSize
      requesterMaxMessageSize = message.maxSPDMMessageSize
    }
    let response = CapabilitiesResponse(
      version: message.version, ctExponent: configuration.ctExponent, flags: configuration.capabilities,
      dataTransferSize: configuration.dataTransferSize, maxSPDMMessageSize: configuration.maxSPDMMessageSize
    ).encode()
    messageA += request + response
    state = .awaitingAlgorithms
    return response
  }

  /// Whether a requester's 1.1+ capability flags are a legal combination (DSP0274 §10.3).
  static func requesterFlagsAreConsistent(_ flags: RequesterCapabilities) -> Bool {
    let psk = (flags.rawValue >> 10) & 0x3
    let protects = !flags.isDisjoint(with: [.encrypt, .mac])
    let exchangesKeys = flags.contains(.keyEx) || psk != 0
    return psk < 2 && protects == exchangesKeys
      && (!flags.contains(.handshakeInTheClear) || flags.contains(.keyEx))
      && !(flags.contains(.cert) && flags.contains(.pubKeyID))
  }

  private mutating func handleNegotiateAlgorithms(_ request: [UInt8]) throws -> [UInt8] {
    var request = request
    guard state == .awaitingAlgorithms, let version else { throw ResponderFailure(.unexpectedRequest) }
    let message = try parse(&request) { bytes throws(WireError) in
      try NegotiateAlgorithmsRequest(parsing: bytes)
    }
    let baseHash = selectPreferred(
      BaseHashAlgorithms.preferenceOrder, offered: message.baseHashAlgorithms,
      supported: configuration.baseHashAlgorithms)
    let signingAlgorithm = BaseAsymAlgorithms(curve: configuration.signingKey.curve)
    let baseAsym = selectPreferred(
      [signingAlgorithm], offered: message.baseAsymAlgorithms,
      supported: configuration.baseAsymAlgorithms)
    let dhe = selectPreferred(
      DHEGroups.preferenceOrder, offered: message.dheGroups, supported: configuration.dheGroups)
    let aead = selectPreferred(
      AEADCipherSuites.preferenceOrder, offered: message.aeadCipherSuites,
      supported: configuration.aeadCipherSuites)
    let keySchedule: KeyScheduleAlgorithms = message.keySchedules.contains(.spdm) ? .spdm : []
    let measurementSpec: MeasurementSpecification =
      message.measurementSpecification.contains(.dmtf) ? .dmtf : []
    // MeasurementHashAlgo is selected only when measurements are possible: a measurement
    // specification in common and MEAS_CAP (libspdm leaves it 0 otherwise).
    let measures = !configuration.capabilities.intersection([.measNoSig, .measSig]).isEmpty
    let measurementHash =
      measurementSpec.isEmpty || !measures
      ? MeasurementHashAlgorithms()
      : selectPreferred(
        MeasurementHashAlgorithms.preferenceOrder, offered: configuration.measurementHashAlgorithms,
        supported: configuration.measurementHashAlgorithms)
    // OtherParams: Cove speaks opaque data format 1 (DSP0274 1.2 Table "OtherParamsSupport").
    let otherParams: UInt8 = message.otherParamsSupport & 0x02
    let response = AlgorithmsResponse(
      version: version, measurementSpecificationSelection: measurementSpec,
      otherParamsSelection: otherParams, measurementHashAlgorithm: measurementHash,
      baseAsymSelection: baseAsym, baseHashSelection: baseHash, dheGroup: dhe, aeadCipherSuite: aead,
      requesterBaseAsymAlgorithm: [], keySchedule: keySchedule,
      // Answer exactly the AlgStruct tables the requester sent (libspdm echoes them).
      algStructTypes: message.algStructTypes
    ).encode()
    messageA += request + response
    // A selection of 0 tells the requester there is nothing in common; it ends the connection. The
    // responder still answers (DSP0274 §10.4) but cannot go on to authentication.
    if let negotiated = try? SPDMNegotiatedAlgorithms(
      version: version, baseHash: baseHash, baseAsym: baseAsym, dheGroup: dhe, aead: aead,
      measurementHash: measurementHash, measurementSpecification: measurementSpec)
    {
      algorithms = negotiated
      certificateChain = SPDMCertificateChain(
        rootHash: negotiated.hash.hash(configuration.certificateChain.first?.der ?? []),
        certificates: configuration.certificateChain.flatMap(\.der))
      state = .negotiated
    } else {
      state = .awaitingVersion
      self.version = nil
    }
    return response
  }

  // MARK: Certificates and challenge

  private mutating func requireNegotiated() throws -> SPDMNegotiatedAlgorithms {
    guard state == .negotiated, let algorithms else { throw ResponderFailure(.unexpectedRequest) }
    return algorithms
  }

  private mutating func handleGetDigests(_ request: [UInt8], sessionID: UInt32?) throws -> [UInt8] {
    var request = request
    let algorithms = try requireNegotiated()
    guard configuration.capabilities.contains(.cert) else {
      throw ResponderFailure(.unsupportedRequest, data: request[1])
    }
    _ = try parse(&request) { bytes throws(WireError) in try GetDigestsRequest(parsing: bytes) }
    let chain = certificateChain!.encode()
    let response = DigestsResponse(
      version: algorithms.version, supportedSlotMask: algorithms.version >= .v13 ? 0x01 : 0,
      provisionedSlotMask: 0x01, digests: [algorithms.hash.hash(chain)]
    ).encode()
    if sessionID == nil { try appendMessageB(request + response) }
    return response
  }

  private mutating func handleGetCertificate(_ request: [UInt8], sessionID: UInt32?) throws -> [UInt8] {
    var request = request
    let algorithms = try requireNegotiated()
    guard configuration.capabilities.contains(.cert) else {
      throw ResponderFailure(.unsupportedRequest, data: request[1])
    }
    let message = try parse(&request) { bytes throws(WireError) in try GetCertificateRequest(parsing: bytes) }
    guard message.slotID == 0 else { throw ResponderFailure(.invalidRequest) }
    let chain = certificateChain!.encode()
    guard Int(message.offset) < chain.count else { throw ResponderFailure(.invalidRequest) }
    // The portion is bounded by what was asked, what is left, and what fits in one message
    // (DataTransferSize minus the 8-byte CERTIFICATE header), DSP0274 §10.6.
    let capacity = Int(min(configuration.dataTransferSize, requesterDataTransferSize)) - 8
    let portion = min(Int(message.length), chain.count - Int(message.offset), capacity)
    let start = Int(message.offset)
    let response = CertificateResponse(
      version: algorithms.version, slotID: 0, portion: Array(chain[start..<start + portion]),
      remainderLength: UInt16(chain.count - start - portion)
    ).encode()
    if sessionID == nil { try appendMessageB(request + response) }
    return response
  }

  private mutating func handleChallenge(_ request: [UInt8]) throws -> [UInt8] {
    var request = request
    let algorithms = try requireNegotiated()
    guard configuration.capabilities.contains(.chal) else {
      throw ResponderFailure(.unsupportedRequest, data: request[1])
    }
    let message = try parse(&request) { bytes throws(WireError) in try ChallengeRequest(parsing: bytes) }
    guard message.slotID == 0 else { throw ResponderFailure(.invalidRequest) }
    let summaryType = message.measurementSummaryHashType
    guard summaryType == .none || summaryType == .tcb || summaryType == .all else {
      throw ResponderFailure(.invalidRequest)
    }
    let chain = certificateChain!.encode()
    var response = ChallengeAuthResponse(
      version: algorithms.version, slotID: 0, slotMask: 0x01, certChainHash: algorithms.hash.hash(chain),
      nonce: entropy.bytes(count: 32),
      measurementSummaryHash: MeasurementSummary.hash(
        type: summaryType, digestBlocks: digestBlocks(algorithms), algorithm: algorithms.hash),
      opaqueData: [], requesterContext: message.requesterContext, signature: [])
    let unsigned = response.encode()
    let transcript = messageA + messageB + request + unsigned
    response.signature = try sign(.challengeAuth, transcript: transcript, algorithms: algorithms)
    messageB = []
    challengeCompleted = true
    return response.encode()
  }

  /// The device's blocks in digest form under the negotiated measurement hash (what the summary
  /// hash covers).
  private func digestBlocks(_ algorithms: SPDMNegotiatedAlgorithms) -> [MeasurementBlock] {
    guard let hash = algorithms.measurementHash.coveHash else { return configuration.measurements }
    return configuration.measurements.map { $0.digestForm(using: hash) }
  }

  private mutating func appendMessageB(_ bytes: [UInt8]) throws {
    guard messageB.count + bytes.count <= Self.transcriptLimit else {
      messageB = []
      throw ResponderFailure(.unspecified)
    }
    messageB += bytes
  }

  private func sign(
    _ context: SPDMSigningContext, transcript: [UInt8], algorithms: SPDMNegotiatedAlgorithms
  ) throws -> [UInt8] {
    do {
      return try context.sign(
        key: configuration.signingKey, hash: algorithms.hash, version: algorithms.version,
        transcriptHash: algorithms.hash.hash(transcript))
    } catch {
      throw ResponderFailure(.unspecified)
    }
  }

  // MARK: Measurements

  private mutating func handleGetMeasurements(_ request: [UInt8], sessionID: UInt32?) throws -> [UInt8] {
    var request = request
    let algorithms = try requireNegotiated()
    let measCapability = configuration.capabilities.intersection([.measNoSig, .measSig])
    guard !measCapability.isEmpty else { throw ResponderFailure(.unsupportedRequest, data: request[1]) }
    let message = try parse(&request) { bytes throws(WireError) in try GetMeasurementsRequest(parsing: bytes)
    }
    if message.signatureRequested {
      guard configuration.capabilities.contains(.measSig) else { throw ResponderFailure(.invalidRequest) }
      guard message.slotID == 0 else { throw ResponderFailure(.invalidRequest) }
    }
    // Raw bit streams only when asked for; otherwise their digests (DSP0274 GET_MEASUREMENTS
    // RawBitStreamRequested).
    let blocks = (message.rawBitStreamRequested ? configuration.measurements : digestBlocks(algorithms))
      .sorted { $0.index < $1.index }
    let selected: [MeasurementBlock]
    var totalIndices: UInt8 = 0
    switch message.operation {
    case 0x00:
      selected = []
      totalIndices = UInt8(clamping: blocks.count)
    case 0xFF: selected = blocks
    default:
      guard let block = blocks.first(where: { $0.index == message.operation }) else {
        throw ResponderFailure(.invalidRequest)
      }
      selected = [block]
    }
    var response = MeasurementsResponse(
      version: algorithms.version, totalMeasurementIndices: totalIndices, slotID: 0, contentChanged: 0,
      blocks: selected, nonce: entropy.bytes(count: 32), opaqueData: [],
      requesterContext: message.requesterContext, signature: [])
    let unsigned = response.encode()
    // DSP0274 ResponseTooLarge: the response must fit the requester's MaxSPDMmsgSize (Cove does not
    // implement chunking).
    let signatureBytes = message.signatureRequested ? algorithms.signatureSize : 0
    guard UInt64(unsigned.count + signatureBytes) <= UInt64(requesterMaxMessageSize) else {
      throw ResponderFailure(.responseTooLarge)
    }
    var accumulated = sessionID.map { sessionMessageM[$0] ?? [] } ?? messageM
    accumulated += request + unsigned
    guard messageA.count + accumulated.count <= Self.transcriptLimit else {
      if let sessionID { sessionMessageM[sessionID] = [] } else { messageM = [] }
      throw ResponderFailure(.unspecified)
    }
    if message.signatureRequested {
      // L1 = A ‖ (GET_MEASUREMENTS ‖ MEASUREMENTS)* with the last response unsigned (DSP0274 1.2 §10.9).
      response.signature = try sign(.measurements, transcript: messageA + accumulated, algorithms: algorithms)
      accumulated = []
    }
    if let sessionID { sessionMessageM[sessionID] = accumulated } else { messageM = accumulated }
    return response.encode()
  }

  // MARK: Key exchange and session

  private mutating func handleKeyExchange(_ request: [UInt8]) throws -> [UInt8] {
    var request = request
    let algorithms = try requireNegotiated()
    guard configuration.capabilities.contains(.keyEx), let dheCurve = algorithms.dheCurve else {
      throw ResponderFailure(.unsupportedRequest, data: request[1])
    }
    // Cove's sessions encrypt and authenticate; a requester without ENCRYPT_CAP and MAC_CAP would
    // need a MAC-only session, which Cove does not implement.
    guard requesterCapabilities.contains(.encrypt), requesterCapabilities.contains(.mac) else {
      throw ResponderFailure(.unsupportedRequest, data: request[1])
    }
    let message = try parse(&request) { bytes throws(WireError) in
      try KeyExchangeRequest(parsing: bytes, exchangeDataSize: algorithms.exchangeDataSize)
    }
    guard message.slotID == 0 else { throw ResponderFailure(.invalidRequest) }
    let summaryType = message.measurementSummaryHashType
    guard summaryType == .none || summaryType == .tcb || summaryType == .all else {
      throw ResponderFailure(.invalidRequest)
    }
    guard sessions.count < configuration.maxSessions else { throw ResponderFailure(.sessionLimitExceeded) }
    // DSP0277 secured-message version: pick the highest both support (1.1 over 1.0).
    var opaqueResponse: [UInt8] = []
    if !message.opaqueData.isEmpty {
      let offered = try parse { () throws(WireError) in try SecuredMessageOpaqueData.parse(message.opaqueData)
      }
      let versions = offered.flatMap { element -> [UInt16] in
        if case .supportedVersions(let versions) = element { return versions } else { return [] }
      }
      guard let chosen = [UInt16(0x1100), 0x1000].first(where: versions.contains) else {
        throw ResponderFailure(.invalidRequest)
      }
      opaqueResponse = SecuredMessageOpaqueData.encode([.selectedVersion(chosen)])
    }
    let peerKey: ECPublicKey
    let ephemeral: ECPrivateKey
    let sharedSecret: [UInt8]
    do {
      peerKey = try ECPublicKey(curve: dheCurve, rawXY: message.exchangeData)
      ephemeral = try ECPrivateKey(curve: dheCurve, entropy: entropy)
      sharedSecret = try ephemeral.sharedSecret(with: peerKey)
    } catch {
      throw ResponderFailure(.invalidRequest)
    }
    var responderSessionID: UInt16 = 0
    repeat {
      let random = entropy.bytes(count: 2)
      responderSessionID = UInt16(random[0]) | UInt16(random[1]) << 8
    } while responderSessionID == 0 || responderSessionID == 0xFFFF
      || sessions[UInt32(responderSessionID) << 16 | UInt32(message.requesterSessionID)] != nil
    // ReqSessionID ‖ RspSessionID on the wire (DSP0277; libspdm: rsp << 16 | req, little-endian).
    let sessionID = UInt32(responderSessionID) << 16 | UInt32(message.requesterSessionID)
    var response = KeyExchangeResponse(
      version: algorithms.version,
      // A heartbeat period only when both sides support HEARTBEAT (DSP0274 KEY_EXCHANGE_RSP Param1).
      heartbeatPeriod: requesterCapabilities.contains(.hbeat) ? configuration.heartbeatPeriod : 0,
      responderSessionID: responderSessionID, mutAuthRequested: 0, requesterSlotIDParam: 0,
      randomData: entropy.bytes(count: 32), exchangeData: ephemeral.publicKey.rawXY,
      measurementSummaryHash: MeasurementSummary.hash(
        type: summaryType, digestBlocks: digestBlocks(algorithms), algorithm: algorithms.hash),
      opaqueData: opaqueResponse, signature: [], responderVerifyData: [])
    // The signature covers Hash(A ‖ Hash(cert chain) ‖ KEY_EXCHANGE ‖ KEY_EXCHANGE_RSP before it).
    var transcript = IncrementalHash(algorithms.hash)
    transcript.update(messageA)
    transcript.update(algorithms.hash.hash(certificateChain!.encode()))
    transcript.update(request)
    transcript.update(response.encode())
    do {
      response.signature = try SPDMSigningContext.keyExchangeResponse.sign(
        key: configuration.signingKey, hash: algorithms.hash, version: algorithms.version,
        transcriptHash: transcript.finalize())
    } catch {
      throw ResponderFailure(.unspecified)
    }
    transcript.update(response.signature)
    var session = SPDMSessionKeys(
      sessionID: sessionID, algorithms: algorithms, sharedSecret: sharedSecret,
      transcriptThroughSignature: transcript)
    session.recordFormat = securedRecordFormat
    response.responderVerifyData = session.responderVerifyData
    session.appendTranscript(response.responderVerifyData)
    sessions[sessionID] = session
    return response.encode()
  }

  private mutating func handleFinish(_ request: [UInt8], sessionID: UInt32) throws -> [UInt8] {
    var request = request
    guard var session = sessions[sessionID] else { throw ResponderFailure(.invalidRequest) }
    let algorithms = session.algorithms
    let message = try parse(&request) { bytes throws(WireError) in
      try FinishRequest(parsing: bytes, hashSize: algorithms.hashSize, signatureSize: nil)
    }
    // No mutual authentication was requested, so a signature must not be present.
    guard !message.signatureIncluded else { throw ResponderFailure(.invalidRequest) }
    var transcript = session.currentTranscript
    transcript.update(Array(request[0..<4]))
    let expected = session.requesterVerifyData(transcriptIncludingFinishHeader: transcript)
    guard ConstantTime.equals(expected, message.requesterVerifyData) else {
      throw ResponderFailure(.decryptError)
    }
    let response = FinishResponse(version: algorithms.version, responderVerifyData: []).encode()
    session.appendTranscript(request)
    session.appendTranscript(response)
    sessions[sessionID] = session
    // The FINISH_RSP itself still travels under the handshake keys; data keys take over after it.
    pendingEstablish.insert(sessionID)
    return response
  }

  private mutating func handleKeyUpdate(_ request: [UInt8], sessionID: UInt32) throws -> SecuredOutcome {
    var request = request
    guard configuration.capabilities.contains(.keyUpd) else {
      throw ResponderFailure(.unsupportedRequest, data: request[1])
    }
    let message = try parse(&request) { bytes throws(WireError) in try KeyUpdateRequest(parsing: bytes) }
    guard var session = sessions[sessionID] else { throw ResponderFailure(.invalidRequest) }
    let ack = KeyUpdateAck(
      version: session.algorithms.version, operation: message.operation, tag: message.tag
    )
    .encode()
    switch message.operation {
    case .updateKey, .updateAllKeys:
      // One update at a time: the previous one must have been verified (VerifyNewKey) first.
      guard pendingKeyUpdate[sessionID] == nil else { throw ResponderFailure(.invalidRequest) }
      // The requester's direction changes now. For UpdateAllKeys the responder's changes too,
      // before the ACK, so the ACK travels under the new responder key (as libspdm does).
      session.updateRequesterKeys()
      if message.operation == .updateAllKeys { session.updateResponderKeys() }
      sessions[sessionID] = session
      pendingKeyUpdate[sessionID] = message.operation
      return SecuredOutcome(response: ack)
    case .verifyNewKey:
      // It decrypted under the new requester key; it is legal only after an update.
      guard pendingKeyUpdate.removeValue(forKey: sessionID) != nil else {
        throw ResponderFailure(.invalidRequest)
      }
      return SecuredOutcome(response: ack)
    default:
      throw ResponderFailure(.invalidRequest)
    }
  }

  private mutating func handleVendorDefined(_ request: [UInt8], sessionID: UInt32?) throws -> [UInt8] {
    var request = request
    _ = try requireNegotiated()
    let message = try parse(&request) { bytes throws(WireError) in try VendorDefinedRequest(parsing: bytes) }
    let response: VendorDefinedResponse
    switch vendorDefinedHandler?.handle(message, sessionID: sessionID) ?? .unsupported {
    case .response(let answer): response = answer
    case .unsupported: throw ResponderFailure(.unsupportedRequest, data: request[1])
    case .noAnswer:
      var silent = ResponderFailure(.unsupportedRequest)
      silent.noAnswer = true
      throw silent
    }
    let bytes = response.encode()
    guard UInt64(bytes.count) <= UInt64(requesterMaxMessageSize) else {
      throw ResponderFailure(.responseTooLarge)
    }
    return bytes
  }

  // MARK: Errors

  private mutating func errorResponse(_ error: any Error) -> [UInt8] {
    let failure = (error as? ResponderFailure) ?? ResponderFailure(.unspecified)
    errorCount += 1
    errorsSent.append(failure.code)
    if errorsSent.count > Self.errorHistoryLimit {
      errorsSent.removeFirst(errorsSent.count - Self.errorHistoryLimit)
    }
    // Before a version is chosen, errors are sent as version 1.0 (DSP0274 §10.2).
    return ErrorResponse(
      version: failure.version ?? version ?? .v10, errorCode: failure.code, errorData: failure.data,
      extendedData: []
    ).encode()
  }
}

/// An internal failure that becomes an SPDM ERROR response.
struct ResponderFailure: Error {
  var code: SPDMErrorCode
  var data: UInt8
  var wire: WireError?
  /// The header version of the ERROR when it must differ from the negotiated one (GET_VERSION).
  var version: SPDMVersion?
  /// The request gets no response at all (an unsecured PCI-SIG protocol message).
  var noAnswer = false

  init(_ code: SPDMErrorCode, data: UInt8 = 0, wire: WireError? = nil, version: SPDMVersion? = nil) {
    self.code = code
    self.data = data
    self.wire = wire
    self.version = version
  }
}
