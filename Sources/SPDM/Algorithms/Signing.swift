public import CoveCrypto

/// SPDM 1.2+ signatures (DSP0274 1.2 §15 "Signature generation").
///
/// The signer signs `M = combined_spdm_prefix ‖ Hash(transcript)`, where `combined_spdm_prefix` is
/// 100 bytes: "dmtf-spdm-v1.N.*" four times (64 bytes), zero padding, then the operation's context
/// string, so a signature made for one operation can never be replayed as another. ECDSA signs
/// Hash(M); on the wire the signature is raw r‖s.
public enum SPDMSigningContext: String, Sendable, CaseIterable {
  case challengeAuth = "responder-challenge_auth signing"
  case measurements = "responder-measurements signing"
  case keyExchangeResponse = "responder-key_exchange_rsp signing"
  case finish = "requester-finish signing"
  case mutualChallengeAuth = "requester-challenge_auth signing"

  /// The 100-byte combined prefix for `version`.
  public func combinedPrefix(version: SPDMVersion) -> [UInt8] {
    let minor = version.rawValue & 0x0F
    let prefix = Array("dmtf-spdm-v1.\(minor).*".utf8)
    var out: [UInt8] = []
    for _ in 0..<4 { out += prefix }
    let context = Array(rawValue.utf8)
    // DSP0274: the context is at most 36 bytes, zero-padded in front so the prefix is 100 bytes.
    precondition(context.count <= 36, "SPDM signing context too long")
    out += [UInt8](repeating: 0, count: 36 - context.count)
    out += context
    return out
  }

  /// `M`, the bytes handed to the signature algorithm.
  public func message(version: SPDMVersion, transcriptHash: [UInt8]) -> [UInt8] {
    combinedPrefix(version: version) + transcriptHash
  }

  public func sign(
    key: ECPrivateKey, hash: HashAlgorithm, version: SPDMVersion, transcriptHash: [UInt8]
  ) throws(CryptoError) -> [UInt8] {
    try key.signature(for: message(version: version, transcriptHash: transcriptHash), hash: hash)
  }

  public func verify(
    _ signature: [UInt8], key: ECPublicKey, hash: HashAlgorithm, version: SPDMVersion,
    transcriptHash: [UInt8]
  ) -> Bool {
    key.isValidSignature(
      signature, for: message(version: version, transcriptHash: transcriptHash), hash: hash)
  }
}
