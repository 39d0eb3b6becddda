public import CoveCrypto
public import CoveWire

/// Why the requester stopped trusting or talking to a responder. Each case names one check of
/// DSP0274 so a tampered or misbehaving device is reported precisely.
public enum SPDMRequesterError: Error, Hashable, Sendable, CustomStringConvertible {
  /// The responder answered with ERROR.
  case responderError(SPDMErrorCode, data: UInt8)
  case malformedResponse(WireError)
  /// A response whose code is not the one the pending request expects.
  case unexpectedResponse(expected: SPDMResponseCode, got: UInt8)
  /// The response carries a version other than the negotiated one.
  case versionMismatch(expected: SPDMVersion, got: SPDMVersion)
  case noCommonVersion(offered: [SPDMVersion])
  /// The responder selected something the policy did not offer, or nothing.
  case algorithmMismatch(String)
  case missingCapability(String)
  /// A response arrived with no request pending, or a request was made out of order.
  case outOfOrder(String)
  case certificateChain(CertificateVerificationError)
  case certificateFormat(String)
  /// DIGESTS said one thing, the retrieved chain hashes to another.
  case certificateDigestMismatch
  case signatureInvalid(String)
  case measurementMismatch(index: UInt8)
  case measurementSummaryMismatch
  case verifyDataMismatch
  case secureMessage(SecuredMessageError)
  case unknownSession(UInt32)
  case crypto(CryptoError)
  /// The transport below SPDM failed (DOE mailbox error, socket closed, …).
  case transport(String)
  /// The responder did not answer in time, or at all (DOE: DATA_OBJECT_READY never set; PCIe 6.x
  /// §6.30.2 allows 1 second).
  case timeout(String)

  public var description: String {
    switch self {
    case .responderError(let code, let data):
      "responder returned ERROR \(code) (data 0x\(String(data, radix: 16)))"
    case .malformedResponse(let error): "malformed response: \(error)"
    case .unexpectedResponse(let expected, let got):
      "expected \(expected) but got response code 0x\(String(got, radix: 16))"
    case .versionMismatch(let expected, let got): "response version \(got), negotiated \(expected)"
    case .noCommonVersion(let offered): "no common SPDM version (responder offers \(offered))"
    case .algorithmMismatch(let what): "algorithm negotiation failed: \(what)"
    case .missingCapability(let what): "responder lacks capability \(what)"
    case .outOfOrder(let what): "out of order: \(what)"
    case .certificateChain(let error): "certificate chain rejected: \(error)"
    case .certificateFormat(let what): "certificate chain malformed: \(what)"
    case .certificateDigestMismatch: "certificate chain does not match its DIGESTS entry"
    case .signatureInvalid(let what): "signature on \(what) does not verify"
    case .measurementMismatch(let index): "measurement \(index) differs from its reference value"
    case .measurementSummaryMismatch: "measurement summary hash does not match the measurements"
    case .verifyDataMismatch: "ResponderVerifyData does not match TH1"
    case .secureMessage(let error): "secured message: \(error)"
    case .unknownSession(let id): "no session 0x\(String(id, radix: 16))"
    case .crypto(let error): "cryptography: \(error)"
    case .transport(let what): "transport: \(what)"
    case .timeout(let what): "timeout: \(what)"
    }
  }
}
