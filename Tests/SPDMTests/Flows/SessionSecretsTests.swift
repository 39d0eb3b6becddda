import CoveCrypto
import PCIe
import SPDM
import Testing

/// What a capture of the DOE traffic is made from (the transport's observer) and what decrypts it
/// (the requester's record of session secrets).
@Suite struct SessionSecretsTests {
  func doeDriver(_ device: TestDevice) -> SPDMRequesterDriver<DOERequesterTransport> {
    var requester = SPDMRequester(policy: device.policy(), entropy: SeededEntropy(seed: 31))
    requester.allowsTransportPadding = true
    return SPDMRequesterDriver(
      requester: requester,
      transport: DOERequesterTransport(endpoint: SPDMDOEEndpoint(responder: device.responder())))
  }

  final class Observed {
    var objects: [(bytes: [UInt8], isRequest: Bool)] = []
  }

  @Test func theObserverSeesEveryObjectAsTheWireCarriesItInOrder() throws {
    var driver = doeDriver(try TestDevice())
    let observed = Observed()
    driver.transport.onObject = { observed.objects.append(($0, $1)) }
    try driver.initializeConnection()
    try driver.retrieveCertificateChain()
    let sessionID = try driver.startSession()
    try driver.endSession(sessionID: sessionID)
    #expect(observed.objects.map(\.bytes) == driver.transport.objects.map { $0.encode() })
    #expect(observed.objects.map(\.isRequest) == driver.transport.objects.indices.map { $0 % 2 == 0 })
    #expect(observed.objects.allSatisfy { $0.bytes.count % 4 == 0 })
  }

  @Test func secretsAreKeptOnlyWhenAskedAndOutliveTheSession() throws {
    let device = try TestDevice()
    var quiet = doeDriver(device)
    try quiet.initializeConnection()
    try quiet.retrieveCertificateChain()
    try quiet.endSession(sessionID: try quiet.startSession())
    #expect(quiet.requester.sessionSecrets.isEmpty)

    var driver = doeDriver(device)
    driver.requester.recordsSessionSecrets = true
    try driver.initializeConnection()
    try driver.retrieveCertificateChain()
    let first = try driver.startSession()
    let session = try #require(driver.requester.sessions[first])
    let secrets = try #require(driver.requester.sessionSecrets.last)
    // The data keys as established, sequence numbers at 0; the secret of the ECDH exchange.
    #expect(secrets.sessionID == first && secrets.sharedSecret == session.sharedSecret)
    #expect(secrets.version == session.algorithms.version && secrets.hash == session.algorithms.hash)
    #expect(secrets.dataKeys?.requester == session.requesterKeys)
    #expect(secrets.dataKeys?.responder == session.responderKeys)
    #expect(secrets.handshakeKeys.requester.key != session.requesterKeys.key)
    try driver.keyUpdate(sessionID: first, operation: .updateAllKeys)
    try driver.endSession(sessionID: first)
    // A new connection (GET_VERSION) and a second session: both kept, in order, unchanged.
    try driver.initializeConnection()
    try driver.retrieveCertificateChain()
    let second = try driver.startSession()
    #expect(driver.requester.sessionSecrets.map(\.sessionID) == [first, second])
    #expect(driver.requester.sessionSecrets.first == secrets)
  }

  @Test func aSessionWhoseFinishFailsKeepsItsHandshakeSecretsOnly() throws {
    let device = try TestDevice()
    var driver = doeDriver(device)
    driver.requester.recordsSessionSecrets = true
    try driver.initializeConnection()
    try driver.retrieveCertificateChain()
    let request = try driver.requester.keyExchangeRequest()
    let response = try driver.transport.exchange(.plain(request))
    guard case .plain(let bytes) = response else {
      Issue.record("KEY_EXCHANGE_RSP not plain")
      return
    }
    let sessionID = try driver.requester.handleKeyExchangeResponse(bytes)
    let secrets = try #require(driver.requester.sessionSecrets.last)
    #expect(secrets.sessionID == sessionID && secrets.data == nil)
    #expect(secrets.handshakeKeys.requester == driver.requester.sessions[sessionID]?.requesterKeys)
  }
}
