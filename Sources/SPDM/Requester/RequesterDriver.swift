public import CoveCrypto

/// Moves SPDM messages to a responder and back: a DOE mailbox, a socket, or a function call.
/// This is the I/O edge; the machines above it never touch a transport themselves.
public protocol SPDMRequesterTransport {
  mutating func exchange(_ message: SPDMTransportMessage) throws(SPDMRequesterError) -> SPDMTransportMessage
}

/// Runs ``SPDMRequester`` operations over a transport: the whole DSP0274 flows a TSM performs
/// (VCA, certificate retrieval, challenge, measurements, session setup, in-session messages).
public struct SPDMRequesterDriver<Transport: SPDMRequesterTransport> {
  public var requester: SPDMRequester
  public var transport: Transport

  public init(requester: SPDMRequester, transport: Transport) {
    self.requester = requester
    self.transport = transport
  }

  private mutating func plain(_ request: [UInt8]) throws(SPDMRequesterError) -> [UInt8] {
    switch try transport.exchange(.plain(request)) {
    case .plain(let response): return response
    case .secured: throw .transport("secured response to a plain request")
    }
  }

  private mutating func secured(_ record: [UInt8]) throws(SPDMRequesterError) -> [UInt8] {
    switch try transport.exchange(.secured(record)) {
    case .secured(let response): return response
    case .plain(let response):
      // Only an ERROR may come back in the clear (e.g. DecryptError after a bad record).
      if let error = try? ErrorResponse(parsing: response) {
        throw .responderError(error.errorCode, data: error.errorData)
      }
      throw .transport("plain response to a secured request")
    }
  }

  /// GET_VERSION, GET_CAPABILITIES, NEGOTIATE_ALGORITHMS (DSP0274 §10.2–§10.4).
  @discardableResult
  public mutating func initializeConnection() throws(SPDMRequesterError) -> SPDMNegotiatedAlgorithms {
    try requester.handleVersion(try plain(requester.getVersionRequest()))
    try requester.handleCapabilities(try plain(try requester.getCapabilitiesRequest()))
    return try requester.handleAlgorithms(try plain(try requester.negotiateAlgorithmsRequest()))
  }

  /// GET_DIGESTS then GET_CERTIFICATE portions until the chain is complete and verified.
  @discardableResult
  public mutating func retrieveCertificateChain() throws(SPDMRequesterError) -> [X509Certificate] {
    try requester.handleDigests(try plain(try requester.getDigestsRequest()))
    // The chain is at most 65535 bytes; the loop is bounded by that over the chunk size.
    let maxRequests = Int(UInt16.max) / max(1, Int(requester.policy.certificateChunkSize)) + 2
    for _ in 0..<maxRequests {
      guard let request = try requester.nextCertificateRequest() else { break }
      if try requester.handleCertificate(try plain(request)) { return requester.certificateChain }
    }
    throw .certificateFormat("certificate chain did not complete")
  }

  public mutating func challenge(summaryType: MeasurementSummaryHashType = .all) throws(SPDMRequesterError) {
    try requester.handleChallengeAuth(try plain(try requester.challengeRequest(summaryType: summaryType)))
  }

  /// GET_MEASUREMENTS for all blocks, signed by default, in a session when one is given, with the
  /// caller's nonce when one is given.
  public mutating func measurements(
    signed: Bool = true, sessionID: UInt32? = nil, nonce: [UInt8]? = nil
  ) throws(SPDMRequesterError) -> MeasurementsResponse {
    let request = try requester.getMeasurementsRequest(
      operation: 0xFF, signed: signed, sessionID: sessionID, nonce: nonce)
    guard let sessionID else { return try requester.handleMeasurements(try plain(request)) }
    let record = try secured(try requester.sealSessionRequest(request, sessionID: sessionID))
    return try requester.handleMeasurements(try requester.openSessionResponse(record, sessionID: sessionID))
  }

  /// KEY_EXCHANGE then FINISH: returns the established session's ID.
  public mutating func startSession(
    summaryType: MeasurementSummaryHashType = .all
  ) throws(SPDMRequesterError) -> UInt32 {
    let sessionID = try requester.handleKeyExchangeResponse(
      try plain(try requester.keyExchangeRequest(summaryType: summaryType)))
    try requester.handleFinishResponse(try secured(try requester.finishRequest(sessionID: sessionID)))
    return sessionID
  }

  public mutating func heartbeat(sessionID: UInt32) throws(SPDMRequesterError) {
    try requester.handleHeartbeatAck(try secured(try requester.heartbeatRequest(sessionID: sessionID)))
  }

  /// KEY_UPDATE (UpdateKey or UpdateAllKeys), then VerifyNewKey under the new requester key, as
  /// DSP0274 requires before another update (and as libspdm's requester does).
  public mutating func keyUpdate(sessionID: UInt32, operation: KeyUpdateOperation) throws(SPDMRequesterError)
  {
    try requester.handleKeyUpdateAck(
      try secured(try requester.keyUpdateRequest(sessionID: sessionID, operation: operation)))
    guard operation != .verifyNewKey else { return }
    try requester.handleKeyUpdateAck(
      try secured(try requester.keyUpdateRequest(sessionID: sessionID, operation: .verifyNewKey)))
  }

  public mutating func endSession(sessionID: UInt32) throws(SPDMRequesterError) {
    try requester.handleEndSessionAck(try secured(try requester.endSessionRequest(sessionID: sessionID)))
  }

  public mutating func vendorDefined(
    standardID: UInt16, vendorID: [UInt8], payload: [UInt8], sessionID: UInt32?
  ) throws(SPDMRequesterError) -> VendorDefinedResponse {
    let request = try requester.vendorDefinedRequest(
      standardID: standardID, vendorID: vendorID, payload: payload, sessionID: sessionID)
    let response: SPDMTransportMessage
    if case .secured(let record) = request {
      response = .secured(try secured(record))
    } else {
      response = try transport.exchange(request)
    }
    return try requester.handleVendorDefinedResponse(response)
  }
}

/// Hands messages straight to a responder in the same process (no transport framing). The DOE
/// transport is the one that moves real mailbox bytes; this one isolates SPDM in tests.
public struct DirectSPDMTransport: SPDMRequesterTransport {
  public var responder: SPDMResponder

  public init(responder: SPDMResponder) {
    self.responder = responder
  }

  public mutating func exchange(_ message: SPDMTransportMessage) throws(SPDMRequesterError)
    -> SPDMTransportMessage
  {
    guard let response = responder.respond(to: message) else { throw .timeout("no response") }
    return response
  }
}
