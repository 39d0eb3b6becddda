import CoveCrypto
import CoveWire
import SPDM
import Testing

/// TH1, TH2 and every derived key checked against an independent implementation of DSP0274 §12
/// (Tests/SPDMTests/Fixtures/spdm_keys.py, Python's `cryptography`), fed the exact bytes that
/// crossed the transport.
@Suite struct IndependentKeyScheduleTests {
  @Test(arguments: [
    (SPDMVersion.v12, BaseHashAlgorithms.sha384), (.v13, .sha384), (.v12, .sha256), (.v13, .sha256),
  ])
  func keyScheduleMatchesPython(_ version: SPDMVersion, _ hash: BaseHashAlgorithms) throws {
    let device = try TestDevice()
    var driver = device.driver(
      policy: device.policy {
        $0.versions = [version]
        $0.baseHashAlgorithms = hash
      })
    try driver.initializeConnection()
    try driver.retrieveCertificateChain()
    let sessionID = try driver.startSession()
    _ = try driver.vendorDefinedOrError(sessionID: sessionID)
    let session = try #require(driver.requester.sessions[sessionID])
    let transport = driver.transport
    let vca = [SPDMRequestCode.getVersion, .getCapabilities, .negotiateAlgorithms].compactMap {
      transport.plainExchange(code: $0)
    }.flatMap { $0.request + $0.response }
    let keyExchange = try #require(transport.plainExchange(code: .keyExchange))
    // FINISH and FINISH_RSP travelled sealed under the handshake keys: recover their plaintext by
    // replaying the handshake keys (independently checked below through req_hs_secret).
    let handshakeSchedule = SPDMKeySchedule(hash: session.algorithms.hash, version: version)
    let handshakeSecrets = handshakeSchedule.handshakeSecrets(
      handshakeSecret: session.handshakeSecret, th1: session.th1)
    var handshake = (
      requester: handshakeSchedule.trafficKeys(secret: handshakeSecrets.requester),
      responder: handshakeSchedule.trafficKeys(secret: handshakeSecrets.responder)
    )
    let finishRecord = transport.exchanges.first { if case .secured = $0.request { true } else { false } }!
    let finish = try SecuredMessage.open(finishRecord.request.bytes, keys: &handshake.requester).message
    let finishResponse = try SecuredMessage.open(finishRecord.response.bytes, keys: &handshake.responder)
      .message
    let firstDataRecord = transport.exchanges.filter {
      if case .secured = $0.request { true } else { false }
    }[1]

    let python = try runPython(
      script: fixturePath("spdm_keys.py"),
      input: [
        "version": version.description, "hash": hash == .sha384 ? "sha384" : "sha256",
        "message_a": Hex.encode(vca),
        "cert_chain": Hex.encode(try #require(driver.requester.spdmCertificateChain).encode()),
        "key_exchange": Hex.encode(keyExchange.request), "key_exchange_rsp": Hex.encode(keyExchange.response),
        "finish": Hex.encode(finish), "finish_rsp": Hex.encode(finishResponse),
        "dhe_secret": Hex.encode(session.sharedSecret),
        "record_req": Hex.encode(firstDataRecord.request.bytes),
      ])
    #expect(python["th1"] == Hex.encode(session.th1))
    #expect(python["th2"] == Hex.encode(session.th2 ?? []))
    #expect(python["req_hs_secret"] == Hex.encode(handshake.requester.secret))
    #expect(python["rsp_hs_secret"] == Hex.encode(handshake.responder.secret))
    #expect(python["rsp_verify_data"] == Hex.encode(keyExchange.response.suffix(hash == .sha384 ? 48 : 32)))
    #expect(python["req_verify_data"] == Hex.encode(finish.suffix(hash == .sha384 ? 48 : 32)))
    #expect(python["req_app_secret"] == Hex.encode(session.requesterKeys.secret))
    #expect(python["rsp_app_secret"] == Hex.encode(session.responderKeys.secret))
    #expect(python["req_key"] == Hex.encode(session.requesterKeys.key))
    #expect(python["req_iv"] == Hex.encode(session.requesterKeys.iv))
    #expect(python["rsp_key"] == Hex.encode(session.responderKeys.key))
    #expect(python["rsp_iv"] == Hex.encode(session.responderKeys.iv))
    // Python decrypted the first data record with its own keys: it is the VENDOR_DEFINED request.
    let plaintext = try #require(python["record_plaintext"].flatMap(Hex.decode))
    #expect(plaintext.count > 4)
    #expect(plaintext[1] == SPDMRequestCode.vendorDefinedRequest.rawValue)
    let schedule = SPDMKeySchedule(hash: session.algorithms.hash, version: version)
    #expect(python["req_update_secret"] == Hex.encode(schedule.updatedSecret(session.requesterKeys.secret)))
  }
}

extension SPDMRequesterDriver {
  /// Sends one vendor-defined message in the session; the test responder has no handler, so the
  /// answer is an UnsupportedRequest ERROR — what matters is the sealed request on the wire.
  mutating func vendorDefinedOrError(sessionID: UInt32) throws -> SPDMRequesterError? {
    do {
      _ = try vendorDefined(standardID: 3, vendorID: [0x36, 0x1B], payload: [1, 2, 3], sessionID: sessionID)
      return nil
    } catch {
      return error
    }
  }
}
