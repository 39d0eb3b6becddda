import CoveCrypto
import CoveWire
import SPDM
import Testing

/// Rules found by reviewing Cove against DMTF libspdm, each pinned so a regression shows up here
/// rather than against a real peer.
@Suite struct InteropRulesTests {
  /// VCA by hand on a responder, with the requester's exchanges recorded.
  func negotiated(
    _ device: TestDevice, configure: (inout SPDMRequesterPolicy) -> Void = { _ in }
  ) throws -> SPDMRequesterDriver<RecordingTransport> {
    var driver = device.driver(policy: device.policy(configure: configure))
    try driver.initializeConnection()
    return driver
  }

  @Test func negotiateAlgorithmsCarriesOnlyNonEmptyTablesAndTheResponderEchoesThem() throws {
    let device = try TestDevice()
    let driver = try negotiated(device)
    let exchange = try #require(driver.transport.plainExchange(code: .negotiateAlgorithms))
    // Param1 = 3 AlgStruct tables (DHE, AEAD, KeySchedule): no empty ReqBaseAsymAlg table, which a
    // libspdm responder rejects. Length = 32 + 3 × 4 = 44.
    #expect(exchange.request[2] == 3)
    #expect(Array(exchange.request[4..<6]) == [44, 0])
    #expect(
      Array(exchange.request[32...]) == [
        0x02, 0x20, 0x18, 0x00, 0x03, 0x20, 0x02, 0x00, 0x05, 0x20, 0x01, 0x00,
      ])
    #expect(exchange.response[2] == 3)
    #expect(try AlgorithmsResponse(parsing: exchange.response).algStructTypes == [.dhe, .aead, .keySchedule])
  }

  @Test func challengeSignatureCoversTheTranscriptLibspdmWouldHash() throws {
    let device = try TestDevice()
    var driver = try negotiated(device)
    let messageA = try vca(driver)
    // GET_DIGESTS twice: the second restarts message B.
    try driver.requester.handleDigests(
      driver.transport.exchange(.plain(driver.requester.getDigestsRequest())).bytes)
    driver.transport.exchanges.removeAll()
    try driver.retrieveCertificateChain()
    try driver.challenge()
    let exchanges = driver.transport.exchanges.map { ($0.request.bytes, $0.response.bytes) }
    // B = the last GET_DIGESTS/DIGESTS and the GET_CERTIFICATE/CERTIFICATE pairs; C = CHALLENGE and
    // CHALLENGE_AUTH without its signature.
    let b = exchanges.dropLast().flatMap { $0.0 + $0.1 }
    let (challenge, auth) = exchanges.last!
    let transcript = messageA + b + challenge + auth.dropLast(96)
    let signature = Array(auth.suffix(96))
    let key = try device.pki.device.publicKey()
    #expect(
      SPDMSigningContext.challengeAuth.verify(
        signature, key: key, hash: .sha384, version: .v13,
        transcriptHash: HashAlgorithm.sha384.hash(transcript)))
  }

  @Test func failedGetMeasurementsEndsTheL1Sequence() throws {
    let device = try TestDevice()
    var driver = try negotiated(device)
    let messageA = try vca(driver)
    try driver.retrieveCertificateChain()
    // An unsigned request for a missing index fails; L1 restarts on both sides.
    let bad = try driver.requester.getMeasurementsRequest(operation: 9, signed: false)
    #expect(throws: SPDMRequesterError.responderError(.invalidRequest, data: 0)) {
      try driver.requester.handleMeasurements(driver.transport.exchange(.plain(bad)).bytes)
    }
    driver.transport.exchanges.removeAll()
    _ = try driver.measurements(signed: true)
    // Independently: the signature covers A ‖ the signed request ‖ its response without signature.
    let (request, response) = (
      driver.transport.exchanges[0].request.bytes, driver.transport.exchanges[0].response.bytes
    )
    let transcript = messageA + request + response.dropLast(96)
    #expect(
      SPDMSigningContext.measurements.verify(
        Array(response.suffix(96)), key: try device.pki.device.publicKey(), hash: .sha384, version: .v13,
        transcriptHash: HashAlgorithm.sha384.hash(transcript)))
  }

  @Test func summaryHashCoversWholeBlocksInDigestForm() throws {
    let block = MeasurementBlock(
      index: 2,
      dmtf: DMTFMeasurement(
        valueType: .mutableFirmwareVersion, isRawBitStream: true, value: Array("2.4.1".utf8)))
    let digest = HashAlgorithm.sha256.hash(Array("2.4.1".utf8))
    // Index 2, spec DMTF, MeasurementSize = 3 + 32, then type 0x06 (digest form), size 32, digest.
    let expected = HashAlgorithm.sha384.hash([0x02, 0x01, 35, 0x00, 0x06, 32, 0x00] + digest)
    #expect(
      MeasurementSummary.hash(
        type: .all, digestBlocks: [block.digestForm(using: .sha256)], algorithm: .sha384) == expected)
    #expect(
      MeasurementSummary.hash(
        type: .tcb, digestBlocks: [block.digestForm(using: .sha256)], algorithm: .sha384)
        == HashAlgorithm.sha384.hash([]))
    #expect(MeasurementSummary.hash(type: .none, digestBlocks: [block], algorithm: .sha384) == [])
  }

  @Test func rawBitStreamsOnlyWhenRequested() throws {
    let raw = MeasurementBlock(
      index: 5,
      dmtf: DMTFMeasurement(
        valueType: .mutableFirmwareVersion, isRawBitStream: true, value: Array("1.0".utf8)))
    let device = try TestDevice()
    var responder = device.responder { $0.measurements.append(raw) }
    var requester = SPDMRequester(
      policy: device.policy { $0.referenceMeasurements = [:] }, entropy: SeededEntropy(seed: 2))
    try requester.handleVersion(responder.respond(to: .plain(requester.getVersionRequest()))!.bytes)
    try requester.handleCapabilities(responder.respond(to: .plain(requester.getCapabilitiesRequest()))!.bytes)
    try requester.handleAlgorithms(
      responder.respond(to: .plain(requester.negotiateAlgorithmsRequest()))!.bytes)
    let request = GetMeasurementsRequest(
      version: .v13, signatureRequested: false, rawBitStreamRequested: false, operation: 5, nonce: nil,
      slotID: 0,
      requesterContext: [UInt8](repeating: 1, count: 8))
    let answer = try MeasurementsResponse(
      parsing: responder.respond(to: .plain(request.encode()))!.bytes, signatureSize: nil)
    #expect(answer.blocks == [raw.digestForm(using: .sha384)])
  }

  @Test func keyUpdateNeedsVerifyNewKeyBetweenUpdates() throws {
    let device = try TestDevice()
    var driver = try negotiated(device)
    try driver.retrieveCertificateChain()
    let sessionID = try driver.startSession()
    // A lone VerifyNewKey, with no update pending, is refused.
    #expect(throws: SPDMRequesterError.responderError(.invalidRequest, data: 0)) {
      try driver.requester.handleKeyUpdateAck(
        try driver.transport.exchange(
          .secured(driver.requester.keyUpdateRequest(sessionID: sessionID, operation: .verifyNewKey))
        ).bytes)
    }
    // Two updates without VerifyNewKey between them: the second is refused.
    try driver.requester.handleKeyUpdateAck(
      try driver.transport.exchange(
        .secured(driver.requester.keyUpdateRequest(sessionID: sessionID, operation: .updateKey))
      ).bytes)
    #expect(throws: SPDMRequesterError.responderError(.invalidRequest, data: 0)) {
      try driver.requester.handleKeyUpdateAck(
        try driver.transport.exchange(
          .secured(driver.requester.keyUpdateRequest(sessionID: sessionID, operation: .updateKey))
        ).bytes)
    }
  }

  @Test func updateAllKeysAckTravelsUnderTheNewResponderKey() throws {
    let device = try TestDevice()
    var driver = try negotiated(device)
    try driver.retrieveCertificateChain()
    let sessionID = try driver.startSession()
    let old = try #require(driver.requester.sessions[sessionID]?.responderKeys)
    let record = try driver.requester.keyUpdateRequest(sessionID: sessionID, operation: .updateAllKeys)
    let ack = try driver.transport.exchange(.secured(record)).bytes
    var oldKeys = old
    #expect(throws: SecuredMessageError.authenticationFailed) { try SecuredMessage.open(ack, keys: &oldKeys) }
    let schedule = SPDMKeySchedule(hash: .sha384, version: .v13)
    var newKeys = schedule.trafficKeys(secret: schedule.updatedSecret(old.secret))
    #expect(try SecuredMessage.open(ack, keys: &newKeys).message[1] == SPDMResponseCode.keyUpdateAck.rawValue)
  }

  @Test func getVersionErrorsAreVersionOneZeroAndUnexpectedInASession() throws {
    let device = try TestDevice()
    var driver = try negotiated(device)
    guard case .plain(let bad)? = driver.transport.responder.respond(to: .plain([0x12, 0x84, 0, 0])) else {
      Issue.record("no answer")
      return
    }
    #expect(bad == [0x10, 0x7F, 0x41, 0x00])
    try driver.retrieveCertificateChain()
    let sessionID = try driver.startSession()
    let record = try driver.requester.sealSessionRequest([0x10, 0x84, 0, 0], sessionID: sessionID)
    guard case .secured(let reply)? = driver.transport.responder.respond(to: .secured(record)) else {
      Issue.record("no secured answer")
      return
    }
    #expect(
      try ErrorResponse(parsing: driver.requester.openSessionResponse(reply, sessionID: sessionID)).errorCode
        == .unexpectedRequest)
  }

  @Test func heartbeatPeriodOnlyWhenBothSupportHeartbeat() throws {
    let device = try TestDevice()
    var driver = device.driver(
      policy: device.policy { $0.capabilities.remove(.hbeat) },
      responder: device.responder { $0.heartbeatPeriod = 30 })
    try driver.initializeConnection()
    try driver.retrieveCertificateChain()
    _ = try driver.startSession()
    let keyExchange = try #require(driver.transport.plainExchange(code: .keyExchange))
    #expect(keyExchange.response[2] == 0)
  }

  @Test func keyExchangeNeedsEncryptAndMacFromTheRequester() throws {
    let device = try TestDevice()
    var driver = try negotiated(device) { $0.capabilities.remove(.encrypt) }
    try driver.retrieveCertificateChain()
    #expect(throws: SPDMRequesterError.responderError(.unsupportedRequest, data: 0xE4)) {
      try driver.startSession()
    }
  }

  @Test func responseLargerThanTheRequesterAcceptsIsResponseTooLarge() throws {
    let device = try TestDevice()
    var driver = try negotiated(device) {
      $0.dataTransferSize = 128
      $0.maxSPDMMessageSize = 128
      $0.certificateChunkSize = 64
    }
    try driver.retrieveCertificateChain()
    // Four 48-byte digests plus 32-byte nonce and a 96-byte signature do not fit in 128 bytes.
    #expect(throws: SPDMRequesterError.responderError(.responseTooLarge, data: 0)) {
      try driver.measurements()
    }
  }

  private func vca(_ driver: SPDMRequesterDriver<RecordingTransport>) throws -> [UInt8] {
    // Message A from the first three exchanges the transport saw (kept by a fresh copy).
    [SPDMRequestCode.getVersion, .getCapabilities, .negotiateAlgorithms].compactMap {
      driver.transport.plainExchange(code: $0)
    }.flatMap { $0.request + $0.response }
  }
}
