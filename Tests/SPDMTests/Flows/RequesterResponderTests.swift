import CoveCrypto
import CoveWire
import SPDM
import Testing

/// The requester and responder against each other in memory, over every algorithm combination.
@Suite struct RequesterResponderTests {
  struct Combination: CustomTestStringConvertible, Sendable {
    var version: SPDMVersion
    var hash: BaseHashAlgorithms
    var curve: EllipticCurve
    var dhe: DHEGroups
    var testDescription: String {
      "SPDM \(version) \(hash == .sha384 ? "SHA-384" : "SHA-256") \(curve) DHE \(dhe == .secp384r1 ? "P-384" : "P-256")"
    }
  }

  static let combinations: [Combination] = {
    var all: [Combination] = []
    for version in [SPDMVersion.v12, .v13] {
      for hash in [BaseHashAlgorithms.sha256, .sha384] {
        for curve in [EllipticCurve.p256, .p384] {
          all.append(
            Combination(
              version: version, hash: hash, curve: curve, dhe: curve == .p384 ? .secp384r1 : .secp256r1))
        }
      }
    }
    return all
  }()

  @Test(arguments: combinations)
  func fullFlow(_ combination: Combination) throws {
    let device = try TestDevice()
    // The device key decides the signature algorithm; build a leaf of the requested curve by
    // letting a P-256 device use a PKI whose device key is P-256 when asked.
    var responderConfig = device.responderConfiguration()
    var anchors = [device.pki.root]
    if combination.curve == .p256 {
      let p256 = try TestPKI.generate(
        entropy: SeededEntropy(seed: 99), notBefore: TestDevice.notBefore, deviceCurve: .p256)
      responderConfig.certificateChain = p256.chainRootToLeaf
      responderConfig.signingKey = p256.deviceKey
      anchors = [p256.root]
    }
    let responder = SPDMResponder(configuration: responderConfig, entropy: SeededEntropy(seed: 5))
    let policy = device.policy {
      $0.versions = [combination.version]
      $0.baseHashAlgorithms = combination.hash
      $0.dheGroups = combination.dhe
      $0.trustAnchors = anchors
      $0.certificateChunkSize = 200
    }
    var driver = device.driver(policy: policy, responder: responder)
    let algorithms = try driver.initializeConnection()
    #expect(algorithms.version == combination.version)
    #expect(algorithms.baseHash == combination.hash)
    #expect(algorithms.signatureCurve == combination.curve)
    #expect(algorithms.dheCurve == combination.curve)
    let chain = try driver.retrieveCertificateChain()
    #expect(chain.count == 3)
    // 200-byte portions: the chain needed several GET_CERTIFICATE round trips.
    let certificateRequests = driver.transport.exchanges.filter {
      $0.request.bytes[1] == SPDMRequestCode.getCertificate.rawValue
    }
    let chainSize = driver.requester.spdmCertificateChain!.encode().count
    #expect(certificateRequests.count == (chainSize + 199) / 200)
    try driver.challenge()
    let measurements = try driver.measurements(signed: true)
    #expect(measurements.blocks.map(\.index) == [1, 2, 3, 4])
    let sessionID = try driver.startSession()
    #expect(driver.requester.sessions[sessionID]?.phase == .established)
    #expect(driver.transport.responder.sessions[sessionID]?.phase == .established)
    // Both ends derived the same data keys.
    #expect(
      driver.requester.sessions[sessionID]?.requesterKeys
        == driver.transport.responder.sessions[sessionID]?.requesterKeys)
    #expect(
      driver.requester.sessions[sessionID]?.responderKeys
        == driver.transport.responder.sessions[sessionID]?.responderKeys)
    let inSession = try driver.measurements(signed: true, sessionID: sessionID)
    #expect(inSession.blocks.count == 4)
    try driver.heartbeat(sessionID: sessionID)
    // Each update is followed by VerifyNewKey under the new key (the driver sends it).
    try driver.keyUpdate(sessionID: sessionID, operation: .updateKey)
    try driver.keyUpdate(sessionID: sessionID, operation: .updateAllKeys)
    try driver.heartbeat(sessionID: sessionID)
    try driver.endSession(sessionID: sessionID)
    #expect(driver.requester.sessions.isEmpty)
    #expect(driver.transport.responder.sessions.isEmpty)
    #expect(driver.transport.responder.errorsSent.isEmpty)
  }

  @Test func keyUpdateChangesKeysAndResetsSequenceNumbers() throws {
    let device = try TestDevice()
    var driver = device.driver()
    try driver.initializeConnection()
    try driver.retrieveCertificateChain()
    let sessionID = try driver.startSession()
    try driver.heartbeat(sessionID: sessionID)
    let before = driver.requester.sessions[sessionID]!
    #expect(before.requesterKeys.sequenceNumber == 1)
    try driver.keyUpdate(sessionID: sessionID, operation: .updateKey)
    let after = driver.requester.sessions[sessionID]!
    #expect(after.requesterKeys.key != before.requesterKeys.key)
    // The new key restarted at sequence 0 and has carried one record: VerifyNewKey.
    #expect(after.requesterKeys.sequenceNumber == 1)
    // UpdateKey changes only the requester's direction.
    #expect(after.responderKeys.key == before.responderKeys.key)
    let schedule = SPDMKeySchedule(hash: .sha384, version: after.algorithms.version)
    #expect(after.requesterKeys.secret == schedule.updatedSecret(before.requesterKeys.secret))
  }

  @Test func certificateFetchedInOneDWAtATimeChunks() throws {
    let device = try TestDevice()
    var driver = device.driver(policy: device.policy { $0.certificateChunkSize = 16 })
    try driver.initializeConnection()
    let chain = try driver.retrieveCertificateChain()
    #expect(chain.map(\.der) == device.pki.chainRootToLeaf.map(\.der))
  }

  @Test func versionNegotiationPicksHighestCommon() throws {
    let device = try TestDevice()
    var driver = device.driver(
      policy: device.policy { $0.versions = [.v12, .v13] },
      responder: device.responder { $0.versions = [.v12] })
    #expect(try driver.initializeConnection().version == .v12)
    var none = device.driver(
      policy: device.policy { $0.versions = [.v13] }, responder: device.responder { $0.versions = [.v12] })
    #expect(throws: SPDMRequesterError.noCommonVersion(offered: [.v12])) { try none.initializeConnection() }
  }

  @Test func algorithmMismatchFailsCleanly() throws {
    let device = try TestDevice()  // P-384 device key
    var driver = device.driver(policy: device.policy { $0.baseAsymAlgorithms = .ecdsaP256 })
    #expect(throws: SPDMRequesterError.algorithmMismatch("no common BaseAsymAlgo")) {
      try driver.initializeConnection()
    }
    var hashes = device.driver(
      policy: device.policy { $0.baseHashAlgorithms = .sha256 },
      responder: device.responder { $0.baseHashAlgorithms = .sha384 })
    #expect(throws: SPDMRequesterError.algorithmMismatch("no common BaseHashAlgo")) {
      try hashes.initializeConnection()
    }
  }
}
