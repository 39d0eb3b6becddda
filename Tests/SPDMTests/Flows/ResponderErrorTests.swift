import CoveCrypto
import CoveWire
import SPDM
import Testing

/// DSP0274 §10.11: every bad request gets its own ERROR code, and the responder keeps serving.
@Suite struct ResponderErrorTests {
  /// Sends a plain request and returns (error code, error data) of the ERROR it must produce.
  func error(_ responder: inout SPDMResponder, _ request: [UInt8]) throws -> (SPDMErrorCode, UInt8) {
    guard case .plain(let response)? = responder.respond(to: .plain(request)) else {
      Issue.record("no plain response")
      return (.unspecified, 0xEE)
    }
    let error = try ErrorResponse(parsing: response)
    return (error.errorCode, error.errorData)
  }

  /// VCA done by hand so single requests can be injected in between.
  func negotiated(_ device: TestDevice, version: SPDMVersion = .v12) throws -> (SPDMResponder, SPDMRequester)
  {
    var responder = device.responder()
    var requester = SPDMRequester(
      policy: device.policy { $0.versions = [version] }, entropy: SeededEntropy(seed: 1))
    try requester.handleVersion(responder.respond(to: .plain(requester.getVersionRequest()))!.bytes)
    try requester.handleCapabilities(responder.respond(to: .plain(requester.getCapabilitiesRequest()))!.bytes)
    try requester.handleAlgorithms(
      responder.respond(to: .plain(requester.negotiateAlgorithmsRequest()))!.bytes)
    return (responder, requester)
  }

  @Test func outOfOrderIsUnexpectedRequest() throws {
    let device = try TestDevice()
    var responder = device.responder()
    // GET_DIGESTS before any VCA.
    #expect(try error(&responder, [0x12, 0x81, 0, 0]) == (.unexpectedRequest, 0))
    // NEGOTIATE_ALGORITHMS right after VERSION, skipping GET_CAPABILITIES.
    _ = responder.respond(to: .plain([0x10, 0x84, 0, 0]))
    var requester = SPDMRequester(policy: device.policy(), entropy: SeededEntropy(seed: 1))
    _ = requester.getVersionRequest()
    #expect(throws: SPDMRequesterError.self) { try requester.negotiateAlgorithmsRequest() }
    let algorithms = NegotiateAlgorithmsRequest(
      version: .v12, measurementSpecification: .dmtf, otherParamsSupport: 0, baseAsymAlgorithms: .ecdsaP384,
      baseHashAlgorithms: .sha384, dheGroups: .secp384r1, aeadCipherSuites: .aes256GCM,
      requesterBaseAsymAlgorithms: [], keySchedules: .spdm)
    #expect(try error(&responder, algorithms.encode()) == (.unexpectedRequest, 0))
    // FINISH outside a session after VCA.
    var (negotiated, _) = try negotiated(device)
    #expect(
      try error(&negotiated, [0x12, 0xE5, 0, 0] + [UInt8](repeating: 0, count: 48)) == (.sessionRequired, 0))
  }

  @Test func unknownCodeIsUnsupportedRequestNamingTheCode() throws {
    let device = try TestDevice()
    var (responder, _) = try negotiated(device)
    #expect(try error(&responder, [0x12, 0xE6, 0, 0]) == (.unsupportedRequest, 0xE6))  // PSK_EXCHANGE
    #expect(try error(&responder, [0x12, 0x9A, 0, 0]) == (.unsupportedRequest, 0x9A))
  }

  @Test func wrongVersionIsVersionMismatch() throws {
    let device = try TestDevice()
    var (responder, _) = try negotiated(device, version: .v12)
    #expect(try error(&responder, [0x13, 0x81, 0, 0]) == (.versionMismatch, 0))
    #expect(try error(&responder, [0x11, 0x84, 0, 0]) == (.versionMismatch, 0))
    // A GET_CAPABILITIES in a version the responder does not offer.
    var fresh = device.responder { $0.versions = [.v12] }
    _ = fresh.respond(to: .plain([0x10, 0x84, 0, 0]))
    let capabilities = GetCapabilitiesRequest(
      version: .v13, ctExponent: 0, flags: [.cert], dataTransferSize: 4096, maxSPDMMessageSize: 4096)
    #expect(try error(&fresh, capabilities.encode()) == (.versionMismatch, 0))
  }

  @Test func malformedIsInvalidRequest() throws {
    let device = try TestDevice()
    var (responder, _) = try negotiated(device)
    // A truncated GET_CERTIFICATE.
    #expect(try error(&responder, [0x12, 0x82, 0, 0, 0]) == (.invalidRequest, 0))
    #expect(try error(&responder, [0x12, 0x81, 0, 0, 0xAA]) == (.invalidRequest, 0))  // trailing byte
    #expect(try error(&responder, [0x12]) == (.invalidRequest, 0))
    #expect(try error(&responder, []) == (.invalidRequest, 0))
    // Certificate offset beyond the chain.
    #expect(try error(&responder, [0x12, 0x82, 0, 0, 0xFF, 0xFF, 0x10, 0x00]) == (.invalidRequest, 0))
  }

  @Test func responderKeepsServingAfterEveryError() throws {
    let device = try TestDevice()
    var responder = device.responder()
    for bad: [UInt8] in [
      [], [0x12], [0x12, 0x81, 0, 0], [0x10, 0x84, 0, 0, 1], [0x99, 0x84, 0, 0], [0x12, 0xFF, 0, 0],
    ] {
      #expect(responder.respond(to: .plain(bad)) != nil)
    }
    // A record for no known session gets no answer (over DOE: the mailbox reports ERROR).
    #expect(responder.respond(to: .secured([1, 2, 3])) == nil)
    #expect(responder.unansweredRecords == 1)
    var driver = device.driver(responder: responder)
    try driver.initializeConnection()
    try driver.retrieveCertificateChain()
    let sessionID = try driver.startSession()
    try driver.heartbeat(sessionID: sessionID)
  }

  @Test func decryptFailureIsDecryptErrorAndEndsTheSession() throws {
    let device = try TestDevice()
    var driver = device.driver()
    try driver.initializeConnection()
    try driver.retrieveCertificateChain()
    let sessionID = try driver.startSession()
    var record = try driver.requester.heartbeatRequest(sessionID: sessionID)
    record[record.count - 1] ^= 0x01  // flip a tag bit
    guard case .secured(let reply)? = driver.transport.responder.respond(to: .secured(record)) else {
      Issue.record("DecryptError must be sealed under the session's response key")
      return
    }
    #expect(driver.transport.responder.sessions[sessionID] == nil)
    // The requester can still open it: the response key was never in doubt.
    let error = try driver.requester.openSessionResponse(reply, sessionID: sessionID)
    #expect(try ErrorResponse(parsing: error).errorCode == .decryptError)
    // The connection survives: a new session can be made.
    var fresh = device.driver(responder: driver.transport.responder)
    try fresh.initializeConnection()
    try fresh.retrieveCertificateChain()
    _ = try fresh.startSession()
  }

  @Test func wrongFinishVerifyDataIsDecryptError() throws {
    let device = try TestDevice()
    var driver = device.driver()
    try driver.initializeConnection()
    try driver.retrieveCertificateChain()
    driver.transport.tamper = nil
    let sessionID = try driver.requester.handleKeyExchangeResponse(
      driver.transport.exchange(.plain(driver.requester.keyExchangeRequest())).bytes)
    // Build a FINISH with corrupted verify data, sealed under the right handshake key.
    let session = driver.requester.sessions[sessionID]!
    let finish = FinishRequest(
      version: session.algorithms.version, signatureIncluded: false, requesterSlotID: 0, signature: [],
      requesterVerifyData: [UInt8](repeating: 0x5A, count: 48))
    let record = try driver.requester.sealSessionRequest(finish.encode(), sessionID: sessionID)
    guard case .secured(let reply)? = driver.transport.responder.respond(to: .secured(record)) else {
      Issue.record("expected a secured ERROR")
      return
    }
    let error = try driver.requester.openSessionResponse(reply, sessionID: sessionID)
    #expect(try ErrorResponse(parsing: error).errorCode == .decryptError)
    #expect(driver.transport.responder.sessions[sessionID] == nil)
  }

  @Test func onlyFinishIsAllowedDuringTheHandshake() throws {
    let device = try TestDevice()
    var driver = device.driver()
    try driver.initializeConnection()
    try driver.retrieveCertificateChain()
    let sessionID = try driver.requester.handleKeyExchangeResponse(
      driver.transport.exchange(.plain(driver.requester.keyExchangeRequest())).bytes)
    let version = try #require(driver.requester.version).rawValue
    let heartbeat = try driver.requester.sealSessionRequest([version, 0xE8, 0, 0], sessionID: sessionID)
    guard case .secured(let reply)? = driver.transport.responder.respond(to: .secured(heartbeat)) else {
      Issue.record("expected a secured ERROR")
      return
    }
    let error = try driver.requester.openSessionResponse(reply, sessionID: sessionID)
    #expect(try ErrorResponse(parsing: error).errorCode == .unexpectedRequest)
  }
}

/// A requester that never asks for a signature cannot grow the responder's L1 without bound.
@Suite struct ResponderBoundsTests {
  @Test func unsignedMeasurementsOverflowResetsL1() throws {
    let device = try TestDevice()
    var driver = device.driver()
    try driver.initializeConnection()
    try driver.retrieveCertificateChain()
    // (A do/catch with a pattern inside this loop crashes the Swift 6.3 compiler, hence Result.)
    var failure: SPDMRequesterError?
    var attempts = 0
    while failure == nil, attempts < 20_000 {
      attempts += 1
      if case .failure(let error) = Result(catching: { () throws(SPDMRequesterError) in
        try driver.measurements(signed: false)
      }) {
        failure = error
      }
    }
    #expect(failure == .responderError(.unspecified, data: 0))
    // L1 = A ‖ k exchanges; the k that first exceeds the cap fails.
    let transport = driver.transport
    let messageA = [SPDMRequestCode.getVersion, .getCapabilities, .negotiateAlgorithms].compactMap {
      transport.plainExchange(code: $0)
    }.reduce(0) { $0 + $1.request.count + $1.response.count }
    let exchange = try #require(transport.plainExchange(code: .getMeasurements))
    let perExchange = exchange.request.count + exchange.response.count
    #expect(attempts == (SPDMResponder.transcriptLimit - messageA) / perExchange + 1)
    // L1 was reset: a signed request now verifies (the requester resets its own L1 on the error too).
    var fresh = device.driver(responder: driver.transport.responder)
    try fresh.initializeConnection()
    try fresh.retrieveCertificateChain()
    _ = try fresh.measurements(signed: true)
  }

  @Test func errorHistoryIsBounded() throws {
    let device = try TestDevice()
    var responder = device.responder()
    for _ in 0..<200 { _ = responder.respond(to: .plain([])) }
    #expect(responder.errorCount == 200)
    #expect(responder.errorsSent.count == SPDMResponder.errorHistoryLimit)
  }
}
