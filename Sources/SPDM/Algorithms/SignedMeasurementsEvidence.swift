public import CoveCrypto

/// A signed MEASUREMENTS exchange in the form a relying party other than the requester can check:
/// the transcript the signature covers (DSP0274 §10.11: VCA followed by every GET_MEASUREMENTS and
/// MEASUREMENTS since the last reset of L1/L2, the last response without its signature) and the
/// signature. A confidential guest receives this from the host TSM and verifies it against the
/// device's leaf key, so it need not trust the TSM's own check.
public struct SignedMeasurementsEvidence: Hashable, Sendable {
  public var version: SPDMVersion
  public var hash: HashAlgorithm
  /// The requester nonce the request carried (32 bytes).
  public var nonce: [UInt8]
  /// messageA ‖ L1 (or L2 in a session), the bytes whose hash is signed.
  public var signedTranscript: [UInt8]
  public var signature: [UInt8]

  public init(
    version: SPDMVersion, hash: HashAlgorithm, nonce: [UInt8], signedTranscript: [UInt8], signature: [UInt8]
  ) {
    self.version = version
    self.hash = hash
    self.nonce = nonce
    self.signedTranscript = signedTranscript
    self.signature = signature
  }

  /// Whether `key` (the device's leaf certificate key) signed this transcript, under the
  /// "measurements signing" context of DSP0274 §15 (1.2+).
  public func verify(with key: ECPublicKey) -> Bool {
    SPDMSigningContext.measurements.verify(
      signature, key: key, hash: hash, version: version, transcriptHash: hash.hash(signedTranscript))
  }
}
