import CoveCrypto
import CoveWire
import SPDM
import Testing

/// A man in the middle or a lying device: each deviation is caught by its own check.
@Suite struct TamperingTests {
  /// Flips one byte of the first plain response to `code`, at `offsetFromEnd` bytes before its end.
  static func flip(code: SPDMRequestCode, offsetFromEnd: Int) -> (SPDMTransportMessage, SPDMTransportMessage)
    -> SPDMTransportMessage
  {
    { request, response in
      guard case .plain(let bytes) = request, bytes.count > 1, bytes[1] == code.rawValue,
        case .plain(var out) = response, out.count > offsetFromEnd
      else { return response }
      out[out.count - 1 - offsetFromEnd] ^= 0x40
      return .plain(out)
    }
  }

  @Test func wrongRootIsRejected() throws {
    let device = try TestDevice()
    let other = try TestPKI.generate(entropy: SeededEntropy(seed: 1234), notBefore: TestDevice.notBefore)
    var driver = device.driver(policy: device.policy { $0.trustAnchors = [other.root] })
    try driver.initializeConnection()
    #expect {
      try driver.retrieveCertificateChain()
    } throws: { error in
      guard case SPDMRequesterError.certificateChain(let failure) = error else { return false }
      return failure.code == .untrustedRoot
    }
  }

  @Test func tamperedChallengeSignatureIsRejected() throws {
    let device = try TestDevice()
    var driver = device.driver()
    driver.transport.tamper = Self.flip(code: .challenge, offsetFromEnd: 3)
    try driver.initializeConnection()
    try driver.retrieveCertificateChain()
    #expect(throws: SPDMRequesterError.signatureInvalid("CHALLENGE_AUTH")) { try driver.challenge() }
  }

  @Test func tamperedMeasurementSignatureIsRejected() throws {
    let device = try TestDevice()
    var driver = device.driver()
    driver.transport.tamper = Self.flip(code: .getMeasurements, offsetFromEnd: 0)
    try driver.initializeConnection()
    try driver.retrieveCertificateChain()
    #expect(throws: SPDMRequesterError.signatureInvalid("MEASUREMENTS")) { try driver.measurements() }
  }

  @Test func measurementDifferentFromReferenceIsRejected() throws {
    let device = try TestDevice()
    let responder = device.responder { configuration in
      // The device now runs firmware the verifier does not expect (index 2).
      configuration.measurements[1] = MeasurementBlock(
        index: 2,
        dmtf: DMTFMeasurement(
          valueType: .mutableFirmware, isRawBitStream: false,
          value: HashAlgorithm.sha384.hash(Array("evil".utf8))))
    }
    var driver = device.driver(responder: responder)
    try driver.initializeConnection()
    try driver.retrieveCertificateChain()
    // The signature is valid (the device signs what it has); the reference check catches it.
    #expect(throws: SPDMRequesterError.measurementMismatch(index: 2)) { try driver.measurements() }
  }

  @Test func summaryHashThatLiesIsRejected() throws {
    let device = try TestDevice()
    var driver = device.driver(policy: device.policy { $0.referenceMeasurements = [:] })
    try driver.initializeConnection()
    try driver.retrieveCertificateChain()
    try driver.challenge()
    // The device's measurements change (a runtime firmware update) after it committed to their
    // summary in CHALLENGE_AUTH; its signed MEASUREMENTS are genuine but no longer match.
    driver.transport.responder.configuration.measurements.removeLast()
    #expect(throws: SPDMRequesterError.measurementSummaryMismatch) { try driver.measurements() }
  }

  @Test func tamperedCertificateIsRejectedByDigest() throws {
    let device = try TestDevice()
    var driver = device.driver()
    // Flip a byte near the end of the chain (inside the leaf's signature) on the wire.
    driver.transport.tamper = { request, response in
      guard case .plain(let bytes) = request, bytes[1] == SPDMRequestCode.getCertificate.rawValue,
        case .plain(var out) = response, out.count > 20, out[6] == 0, out[7] == 0
      else { return response }
      out[out.count - 5] ^= 0x01
      return .plain(out)
    }
    try driver.initializeConnection()
    #expect(throws: SPDMRequesterError.certificateDigestMismatch) { try driver.retrieveCertificateChain() }
  }

  @Test func tamperedKeyExchangeSignatureAndVerifyData() throws {
    let device = try TestDevice()
    var driver = device.driver()
    try driver.initializeConnection()
    try driver.retrieveCertificateChain()
    driver.transport.tamper = Self.flip(code: .keyExchange, offsetFromEnd: 48 + 2)
    #expect(throws: SPDMRequesterError.signatureInvalid("KEY_EXCHANGE_RSP")) { try driver.startSession() }
    driver.transport.tamper = Self.flip(code: .keyExchange, offsetFromEnd: 2)
    #expect(throws: SPDMRequesterError.verifyDataMismatch) { try driver.startSession() }
  }

  @Test func expiredDeviceCertificateIsRejected() throws {
    let device = try TestDevice()
    var driver = device.driver(
      policy: device.policy { $0.validationTime = TestDevice.notBefore + 11 * 365 * 86_400 })
    try driver.initializeConnection()
    #expect {
      try driver.retrieveCertificateChain()
    } throws: { error in
      guard case SPDMRequesterError.certificateChain(let failure) = error else { return false }
      return failure.code == .expired
    }
  }
}
